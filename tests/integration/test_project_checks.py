"""The project's own checks gate a change: real ruff, ruff-format, pre-commit, git, in the sandbox.

The fixture package has its own ruff configuration (ignores B008 and B905, line length 100,
single quotes, an `include`), formats with ruff-format, and a pre-commit config with a `repo:
local` hook and a remote hook (which needs the network and is reported as not run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.adapters.analyzers import DEFAULT_SELECT, run_ruff, tool_command
from shared.adapters.project_checks import count_findings, gate_change
from shared.adapters.project_tools import detect
from shared.adapters.sandbox import LocalSandbox
from shared.engines.rules import facts as facts_mod
from shared.engines.rules.engine import collect_findings, collect_lint_findings
from shared.events import ChangeRejected
from shared.policy.checks_gate import checks_of
from shared.ports.errors import ChangeRejectedError
from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration

PYPROJECT = """\
[project]
name = "tidy"
version = "4.16.0"
requires-python = ">=3.10"

[tool.ruff]
line-length = 100
include = ["tidy/**/*.py", "tests/**/*.py"]

[tool.ruff.lint]
extend-select = ["I", "B"]
ignore = ["B008", "B905"]

[tool.ruff.lint.per-file-ignores]
"tidy/compat.py" = ["F401"]

[tool.ruff.format]
quote-style = "single"
"""

PRE_COMMIT = """\
repos:
  - repo: https://github.com/pre-commit/pre-commit-hooks
    rev: v4.6.0
    hooks:
      - id: trailing-whitespace
  - repo: local
    hooks:
      - id: no-forbidden-word
        name: no forbidden word
        entry: bash -c '! grep -n FORBIDDEN "$@"' --
        language: system
        types: [python]
"""

CORE = """\
import os
from dataclasses import field


def default_path(path=os.path.join('a', 'b')):
    return path


def pairs(a, b):
    return list(zip(a, b))


def settings(items=field(default_factory=list)):
    return items


def unset(x):
    return x == None
"""


@pytest.fixture
def project(tmp_path) -> Path:
    return make_git_repo(tmp_path / "tidy", {
        "pyproject.toml": PYPROJECT,
        ".pre-commit-config.yaml": PRE_COMMIT,
        "tidy/__init__.py": "",
        "tidy/core.py": CORE,
        "tidy/compat.py": "import json\n",
        "scripts/outside.py": "import os\nx = [i for i in list(range(3))]\n",
    })  # fmt: skip


def _head(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def _ruff(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*tool_command("ruff"), *args, "--no-cache"], cwd=repo, capture_output=True, text=True,
                          check=False)  # fmt: skip


def test_detects_what_the_project_runs_and_which_hooks_need_the_network(project):
    tools, skipped = detect(project)
    assert tools == ["ruff", "ruff-format", "pre-commit"]
    assert skipped == {"pre-commit:trailing-whitespace": "needs network"}


def test_rules_the_project_ignores_or_files_it_leaves_out_are_never_proposed(project):
    facts = facts_mod.collect(project)
    proposed = collect_findings(project, facts) + collect_lint_findings(project, facts)
    codes = {f.code for f in proposed}
    assert not codes & {"B008", "B905"}
    assert not any(f.path == "scripts/outside.py" for f in proposed)  # outside the project's `include`
    assert not any(f.path == "tidy/compat.py" and f.code == "F401" for f in proposed)  # per-file ignore
    assert "E711" in codes  # what the project does not ignore is still seen
    # …and without the project's configuration the ignored rules would have been found
    isolated = {f.code for f in run_ruff(project, facts.python_files, DEFAULT_SELECT, "py310")}
    assert {"B008", "B905"} <= isolated


async def test_a_change_that_breaks_format_and_import_order_is_repaired_in_its_own_lines(project):
    base = _head(project)
    core = project / "tidy" / "core.py"
    untouched = "\n\nCONSTANT = {  'a':1,\n    'b':2}\n"  # unformatted before the change: not ours to touch
    make_git_repo(project, {"tidy/core.py": CORE + untouched}, message="an unformatted constant")
    base = _head(project)
    changed = core.read_text().replace(
        "import os\n", "import os\nimport sys\nimport abc\n"  # unsorted, and `sys`/`abc` unused
    ).replace("def pairs(a, b):\n    return list(zip(a, b))\n",
              'def pairs(a, b):\n    return list(zip(a,\n        b))\n\n\n\n\ndef size(x): return len( x )\n')
    core.write_text(changed)

    report = await gate_change(project, base, LocalSandbox())

    text = core.read_text()
    assert report.repaired == ["tidy/core.py"]
    assert "import sys" not in text and "import abc" not in text  # ruff's safe F401 fix, in the added lines
    assert "def size(x):\n    return len(x)\n" in text  # formatted where the change wrote
    assert "\n\n\n\n" not in text.split("CONSTANT")[0]  # no blank-line debris
    assert text.endswith(untouched)  # the project's own unformatted code elsewhere is left alone
    assert "ruff 0→0" in report.line() and "pre-commit:trailing-whitespace (needs network)" in report.line()
    recorded = report.as_event()  # what ChangeApplied records
    assert recorded.ran == ["ruff", "ruff-format", "pre-commit"] and recorded.repaired == ["tidy/core.py"]
    assert recorded.after == recorded.before == {"ruff": 0, "ruff-format": 1, "pre-commit": 0}  # CONSTANT stays
    assert recorded.not_run == {"pre-commit:trailing-whitespace": "needs network"}
    # Under the project's own configuration: no finding in the file, and the change's lines formatted.
    assert _ruff(project, "check", "tidy/core.py").returncode == 0


async def test_a_change_adding_a_finding_without_a_safe_fix_is_rejected_with_the_finding_named(project):
    base = _head(project)
    core = project / "tidy" / "core.py"
    core.write_text(core.read_text() + "\n\ndef collect(item, into=[]):\n    into.append(item)\n    return into\n")
    with pytest.raises(ChangeRejectedError) as caught:
        await gate_change(project, base, LocalSandbox())
    assert "ruff: tidy/core.py:" in caught.value.reason and "B006" in caught.value.reason
    # what the checks said travels with the rejection into ChangeRejected
    recorded = checks_of(caught.value)
    assert recorded is not None and recorded.before["ruff"] + 1 == recorded.after["ruff"]
    assert ChangeRejected(improvement_id="i", reason=caught.value.reason, checks=recorded).checks == recorded


async def test_a_change_using_what_the_project_ignores_passes(project):
    base = _head(project)
    core = project / "tidy" / "core.py"
    core.write_text(core.read_text() + "\n\ndef both(a, b, c=field(default=1)):\n    return zip(a, b)\n")
    report = await gate_change(project, base, LocalSandbox())
    assert report.checks == ["ruff", "ruff-format", "pre-commit"]  # B008, B905 ignored: nothing added


async def test_a_local_pre_commit_hook_the_change_breaks_rejects_it(project):
    base = _head(project)
    (project / "tidy" / "words.py").write_text("WORD = 'FORBIDDEN'\n")
    with pytest.raises(ChangeRejectedError, match="pre-commit hook `no forbidden word` fails"):
        await gate_change(project, base, LocalSandbox())
    assert (project / "tidy" / "words.py").read_text() == "WORD = 'FORBIDDEN'\n"  # the hook changed nothing


async def test_findings_are_counted_per_tool_under_the_projects_configuration(project):
    (project / "tidy" / "extra.py").write_text("import os\nX = {  'a':1}\n")  # F401 and I001, unformatted
    files = ["tidy/core.py", "tidy/compat.py", "tidy/extra.py", "scripts/outside.py", "gone.py"]
    counts = await count_findings(project, files, LocalSandbox())
    # core.py's B008/B905 and compat.py's F401 are ignored by the project; outside.py is not in its
    # `include`; gone.py is absent
    assert counts == {"ruff": 2, "ruff-format": 1, "pre-commit": 0,
                      "pre-commit:trailing-whitespace": "not run: needs network"}  # fmt: skip


def test_pre_commit_is_installed_beside_repo_pilot():
    assert (Path(sys.executable).parent / "pre-commit").exists()


async def test_generated_tests_import_nothing_undeclared_and_pass_the_projects_ruff(project, tmp_path):
    from shared.engines.rules.engine import RulesEngine
    from shared.events import Improvement

    core = project / "tidy" / "core.py"
    core.write_text("import sys\n" + core.read_text())
    make_git_repo(project, {}, message="an unused import")
    core.write_text(core.read_text().replace("import sys\n", "", 1))
    imp = Improvement(id="compliance-lint-f", category="compliance", title="Fix 1 pyflakes finding",
                      rationale="unused", files=["tidy/core.py"], rule="lint:F401",
                      changes="- `tidy/core.py:1` F401: `sys` imported but unused")  # fmt: skip
    make_git_repo(project, {}, message="compliance: fix\n\nRepo-Pilot-Improvement: compliance-lint-f")

    engine = RulesEngine(home=tmp_path / "home", tools_home=tmp_path / "tools", sandbox=LocalSandbox())
    generated = await engine.write_tests(project, [imp], ["compliance"])

    change = generated.groups["compliance"]["tests/repo_pilot/test_compliance_change.py"]
    assert "hypothesis" not in change  # the project does not declare it
    assert "importlib.import_module('tidy.core')" in change  # the project's quote style
    assert not (project / "tests" / "repo_pilot").exists() or not any((project / "tests" / "repo_pilot").iterdir())
    for files in generated.groups.values():
        for rel, text in files.items():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            (project / rel).write_text(text)
    written = sorted(rel for files in generated.groups.values() for rel in files)
    assert _ruff(project, "check", *written).returncode == 0  # no unused imports, sorted, under its config
    assert _ruff(project, "format", "--check", *written).returncode == 0
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *written], cwd=project,
                         capture_output=True, text=True, env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"},
                         check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]
