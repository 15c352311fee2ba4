"""A symlink in the target repository that leads out of it is never followed: what it points at is
not read by the rules engine's facts, the analysis documents, the analyzers or the model's scan."""

from __future__ import annotations

import subprocess

import pytest

from shared.engines.rules import facts as facts_mod
from shared.engines.rules.analyze import analyze_facts
from shared.engines.rules.engine import collect_findings
from shared.engines.scan import render_scan, scan_repo
from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration

OUTSIDE = (
    "import subprocess\n\n\nLEAKED_CONSTANT = 'hunter2-outside'\n\n\n"
    "def leaked_outside_function(cmd):\n    return subprocess.call(cmd, shell=True)\n"
)


def test_a_symlink_out_of_the_repository_is_never_read(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "elsewhere.py").write_text(OUTSIDE)
    (outside / "pyproject.toml").write_text('[project]\nname = "leaked-project-name"\n')
    repo = make_git_repo(tmp_path / "repo", {"app.py": "def main():\n    return 0\n",
                                             "pkg/__init__.py": "def helper():\n    return 1\n"})
    (repo / "linked.py").symlink_to(outside / "elsewhere.py")
    (repo / "pyproject.toml").symlink_to(outside / "pyproject.toml")
    (repo / "pkg" / "vendored").symlink_to(outside, target_is_directory=True)
    (repo / "pkg" / "alias.py").symlink_to(repo / "pkg" / "__init__.py")  # stays inside: may be read
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "links"],
                   check=True)

    facts = facts_mod.collect(repo)
    assert "linked.py" not in facts.files and "pyproject.toml" not in facts.files
    assert not any(f.startswith("pkg/vendored") for f in facts.files)
    assert "pkg/alias.py" in facts.python_files
    assert "out of the repository" in facts.skipped["linked.py"]
    assert facts.pyproject == {}

    analysis = analyze_facts(facts)
    documents = analysis.specification + analysis.graph + analysis.architecture
    for leaked in ("leaked_outside_function", "LEAKED_CONSTANT", "elsewhere", "leaked-project-name"):
        assert leaked not in documents

    findings = collect_findings(repo, facts)
    assert not [f for f in findings if f.path in ("linked.py", "pyproject.toml") or "vendored" in f.path]

    scanned = render_scan(scan_repo(repo))
    assert "leaked_outside_function" not in scanned and "hunter2-outside" not in scanned
