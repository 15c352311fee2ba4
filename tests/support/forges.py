"""A run's working copy for the forge tests: a clone with a feature committed on the run branch."""

from __future__ import annotations

from pathlib import Path

from shared.adapters.git import git
from shared.adapters.workspace import commit_all

BRANCH = "repo-pilot/run-1"
TOKEN = "stub-token"  # what tests/support/github_stub.py accepts


def work_copy(origin: Path, dest: Path) -> Path:
    git(dest.parent, "clone", "--quiet", str(origin), str(dest))
    git(dest, "checkout", "--quiet", "-b", BRANCH)
    (dest / "feature.py").write_text("def feature():\n    return 42\n")
    commit_all(dest, "Add a feature")
    return dest
