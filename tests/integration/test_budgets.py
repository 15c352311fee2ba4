"""Budgets: a 7 MB source file and a 60 MB binary are skipped by every scanner and parser, and
the skip is reported. Memory is checked on a real subprocess (peak RSS); time goes to benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration

MEMORY_BUDGET_KB = 1024 * 1024  # 1 GB

# Everything the offline engine reads a repository with: facts (parse), ruff + bandit + the secrets
# scan (findings), the analysis documents, and the model's scan.
SCRIPT = """
import json, resource, sys
from pathlib import Path
from shared.engines.rules import facts as facts_mod
from shared.engines.rules.analyze import analyze_facts
from shared.engines.rules.engine import collect_findings
from shared.engines.scan import scan_repo
repo = Path(sys.argv[1])
facts = facts_mod.collect(repo)
findings = collect_findings(repo, facts)
analysis = analyze_facts(facts)
scan = scan_repo(repo)
print(json.dumps({
    "skipped": facts.skipped, "python_files": facts.python_files,
    "stats_skipped": analysis.stats["skipped_files"], "spec": analysis.specification,
    "scan_skipped": scan.stats["skipped"], "scan_read": [f.path for f in scan.files],
    "findings": sorted({f.path for f in findings}),
}))
"""


def big_repo(tmp_path):
    repo = make_git_repo(tmp_path / "big", {"app.py": "import os\n\n\ndef main():\n    return os.getcwd()\n"})
    line = "VALUE_{n} = {n} * 2  # generated\n"
    with open(repo / "generated.py", "w") as fh:  # ~7 MB of valid Python
        n = 0
        while fh.tell() < 7 * 1024 * 1024:
            fh.write(line.format(n=n))
            n += 1
    with open(repo / "assets.bin", "wb") as fh:  # 60 MB binary
        chunk = os.urandom(1024 * 1024)
        for _ in range(60):
            fh.write(chunk)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "big"],
                   check=True, capture_output=True)
    return repo


def test_big_source_and_binary_are_skipped_within_the_memory_budget(tmp_path):
    repo = big_repo(tmp_path)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(repo)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import resource

    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: kilobytes
    out = json.loads(proc.stdout)

    assert "too large" in out["skipped"]["generated.py"]
    assert out["python_files"] == ["app.py"]
    assert "generated.py" in out["stats_skipped"] and "generated.py: too large" in out["spec"]
    assert out["scan_skipped"].get("too_large", 0) + out["scan_skipped"].get("binary", 0) >= 2
    assert "generated.py" not in out["scan_read"] and "assets.bin" not in out["scan_read"]
    assert "generated.py" not in out["findings"]
    assert peak_kb < MEMORY_BUDGET_KB, f"peak RSS {peak_kb / 1024:.0f} MB"
