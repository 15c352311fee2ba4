"""Validating a behaviour-changing fix with the repository's own tests (in its own environment).

The suite runs once on a clean copy at the base (shared by every improvement of the run) and once
with the fix alone; the fix is kept only when no test that passed before fails after. The tests
run through the existing target environment (`target_env.python_for`) and sandbox.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from shared.adapters.git import git
from shared.adapters.own_tests import run_own_pytest
from shared.adapters.target_env import python_for
from shared.events import TestGroupResult

TIMEOUT = 600.0
_FAILED = re.compile(r"^FAILED (\S.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # why rejected, or what was validated


def failing_tests(result: TestGroupResult) -> set[str]:
    """Names of the failing/erroring tests a run reported (JUnit names, one `FAILED` line each)."""
    return set(_FAILED.findall(result.output or ""))


def compare(before: TestGroupResult, after: TestGroupResult) -> Verdict:
    """Keep a fix when the own suite ran, and no test that passed before fails with it (pure)."""
    if before.errors and not before.passed:
        return Verdict(False, "the repository's own tests do not run at the base, so a behaviour-changing fix "
                              "cannot be validated: " + _first_error(before.output))  # fmt: skip
    if before.total == 0:
        return Verdict(False, "the repository has no tests of its own to validate a behaviour-changing fix with")
    newly = sorted(failing_tests(after) - failing_tests(before))
    worse = after.failed + after.errors > before.failed + before.errors or after.passed < before.passed
    if newly or worse:
        named = ", ".join(newly[:5]) or (after.output or "")[-300:]
        return Verdict(False, f"it breaks the repository's own tests ({after.passed} passed, "
                              f"{after.failed + after.errors} failing after vs {before.passed} passed, "
                              f"{before.failed + before.errors} failing before): {named}")  # fmt: skip
    return Verdict(True, f"the repository's own tests still pass with it alone ({after.passed}/{after.total} passed, "
                         f"{before.passed} before)")  # fmt: skip


def _first_error(output: str) -> str:
    lines = [line for line in (output or "").splitlines() if line.strip() and not line.startswith("python:")]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors[-1] if errors else " | ".join(lines[:2]))[:300]


class OwnTests:
    """Runs the repository's own suite in working copies; the base run is computed once per sha."""

    def __init__(self, home: Path, sandbox) -> None:
        self.home, self.sandbox = Path(home), sandbox
        self._baselines: dict[str, asyncio.Future[TestGroupResult]] = {}

    async def run(self, path: Path) -> TestGroupResult:
        """The suite at `path`; whatever the run leaves behind (caches, outputs) is removed after,
        so the working copy's diff is the fix alone."""
        untracked = _untracked(path)
        py = await python_for(path, self.home, self.sandbox)
        try:
            result = await run_own_pytest(self.sandbox, path, py, TIMEOUT)
        finally:
            for rel in sorted(_untracked(path) - untracked):
                _remove(Path(path) / rel)
        return result

    async def baseline(self, path: Path) -> TestGroupResult:
        """The suite at `path`'s HEAD before anything is changed (call before editing the copy)."""
        sha = git(path, "rev-parse", "HEAD")
        if sha not in self._baselines:
            self._baselines[sha] = asyncio.ensure_future(self.run(path))
        return await asyncio.shield(self._baselines[sha])

    async def changed(self, path: Path) -> TestGroupResult:
        """The suite with the working copy's uncommitted change; stale bytecode removed first."""
        for cache in Path(path).rglob("__pycache__"):
            if cache.is_dir():
                shutil.rmtree(cache, ignore_errors=True)
        return await self.run(path)


def restore(path: Path, untracked_before: set[str]) -> None:
    """Undo an uncommitted fix: tracked files back to HEAD, files it created removed."""
    git(path, "checkout", "-q", "--", ".")
    for rel in sorted(_untracked(path) - untracked_before):
        _remove(Path(path) / rel)


def _remove(target: Path) -> None:
    """An untracked file, or a directory git lists as one entry (a nested repository the tests made)."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)


def untracked_files(path: Path) -> set[str]:
    return _untracked(path)


def _untracked(path: Path) -> set[str]:
    return set(filter(None, git(path, "ls-files", "--others", "--exclude-standard", "-z").split("\0")))
