"""Validating a behaviour-changing fix with the repository's own tests (in its own environment).

The suite runs once on a clean copy at the base (shared by every improvement of the run); a fix is
kept only when no test that passed before fails with it. The tests run through the existing target
environment (`target_env.python_for`) and sandbox.

Fixes are validated in batches: each candidate's copy registers when it asks for the base run
(before it is edited); once every registered candidate of a base has handed in its change (or its
copy is gone: rejected before validation), the changes of all of them are copied into one of the
copies and the suite runs once. A green batch validates them all; a red one is split in halves,
down to single fixes, which get the verdict they would have alone. Fixes that touch the same file
are never put in one batch. A run used to execute the suite once per candidate (more-itertools:
most of a 451 s run); `SUITE_RUNS` counts the runs per base sha, so the benchmark reads the
engine's own count.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from shared.adapters.git import git, run_git
from shared.adapters.own_tests import run_own_pytest
from shared.adapters.target_env import python_for
from shared.events import TestGroupResult

TIMEOUT = 600.0
GATHER_POLL = 0.2  # how often a batch checks whether its registered candidates are all in
GATHER_MAX = 30.0  # a candidate that neither hands in its change nor goes away is not waited for longer
SUITE_RUNS: Counter[str] = Counter()  # own-suite runs by this process's validation, per base sha
_FAILED = re.compile(r"^FAILED (\S.*)$", re.MULTILINE)
_BATCHED = re.compile(r"^own\+(\d+)$")  # the group of a result shared by a batch: own+<other fixes>


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
        return Verdict(
            False, "the repository has no tests of its own to validate a behaviour-changing fix with"
        )
    newly = sorted(failing_tests(after) - failing_tests(before))
    worse = after.failed + after.errors > before.failed + before.errors or after.passed < before.passed
    if newly or worse:
        named = ", ".join(newly[:5]) or (after.output or "")[-300:]
        return Verdict(False, f"it breaks the repository's own tests ({after.passed} passed, "
                              f"{after.failed + after.errors} failing after vs {before.passed} passed, "
                              f"{before.failed + before.errors} failing before): {named}")  # fmt: skip
    together = _BATCHED.match(after.group)
    how = f"together with {together.group(1)} other fix(es) in one run" if together else "with it alone"
    return Verdict(True, f"the repository's own tests still pass {how} ({after.passed}/{after.total} passed, "
                         f"{before.passed} before)")  # fmt: skip


def _first_error(output: str) -> str:
    lines = [line for line in (output or "").splitlines() if line.strip() and not line.startswith("python:")]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors[-1] if errors else " | ".join(lines[:2]))[:300]


@dataclass
class _Candidate:
    path: Path
    changes: dict[str, bool]  # path -> deleted; what the fix changed against HEAD
    verdict: asyncio.Future


@dataclass
class _Batch:
    registered: set[Path] = field(default_factory=set)  # asked for the base run, not handed in yet
    handed_in: list[_Candidate] = field(default_factory=list)
    runner: asyncio.Task | None = None


class OwnTests:
    """Runs the repository's own suite in working copies; the base run is computed once per sha,
    and changes are validated in batches (module docstring)."""

    def __init__(self, home: Path, sandbox) -> None:
        self.home, self.sandbox = Path(home), sandbox
        self._baselines: dict[str, asyncio.Future[TestGroupResult]] = {}
        self._batches: dict[str, _Batch] = {}

    async def run(self, path: Path, sha: str | None = None) -> TestGroupResult:
        """The suite at `path`; whatever the run leaves behind (caches, outputs) is removed after,
        so the working copy's diff is the fix alone."""
        untracked = _untracked(path)
        py = await python_for(path, self.home, self.sandbox)
        SUITE_RUNS[sha or git(path, "rev-parse", "HEAD")] += 1
        try:
            result = await run_own_pytest(self.sandbox, path, py, TIMEOUT)
        finally:
            for rel in sorted(_untracked(path) - untracked):
                _remove(Path(path) / rel)
        return result

    async def baseline(self, path: Path) -> TestGroupResult:
        """The suite at `path`'s HEAD before anything is changed (call before editing the copy);
        also registers the copy as a candidate of that base's next batch."""
        sha = git(path, "rev-parse", "HEAD")
        self._batches.setdefault(sha, _Batch()).registered.add(Path(path))
        if sha not in self._baselines:
            self._baselines[sha] = asyncio.ensure_future(self.run(path, sha))
        return await asyncio.shield(self._baselines[sha])

    async def changed(self, path: Path) -> TestGroupResult:
        """The suite with the working copy's uncommitted change (run in a batch with the other
        candidates of the same base when there are some): compare it with the base run."""
        path = Path(path)
        sha = git(path, "rev-parse", "HEAD")
        batch = self._batches.setdefault(sha, _Batch())
        batch.registered.discard(path)
        candidate = _Candidate(path, _changes(path), asyncio.get_running_loop().create_future())
        batch.handed_in.append(candidate)
        if batch.runner is None or batch.runner.done():
            batch.runner = asyncio.ensure_future(self._gather_and_validate(sha, batch))
        return await asyncio.shield(candidate.verdict)

    async def _gather_and_validate(self, sha: str, batch: _Batch) -> None:
        waited = time.monotonic()
        while any(p.exists() for p in batch.registered) and time.monotonic() - waited < GATHER_MAX:
            await asyncio.sleep(GATHER_POLL)
        batch.registered = {p for p in batch.registered if p.exists()}
        candidates, batch.handed_in = batch.handed_in, []
        try:
            before = await asyncio.shield(self._baselines[sha]) if sha in self._baselines else None
            for group in _disjoint(candidates):
                await self._validate(group, before, sha)
        except BaseException as exc:  # each waiting candidate raises it (nobody awaits this task)
            for c in candidates:
                if not c.verdict.done():
                    c.verdict.set_exception(exc)
        finally:
            if batch.handed_in:  # handed in while this batch ran: the next batch
                batch.runner = asyncio.ensure_future(self._gather_and_validate(sha, batch))

    async def _validate(self, group: list[_Candidate], before: TestGroupResult | None, sha: str) -> None:
        """Every candidate of `group` gets the result of a run that included its change."""
        if before is not None and not compare(before, before).ok:
            for c in group:  # the base does not run: no change can be validated, none needs a run
                c.verdict.set_result(before)
            return
        if len(group) == 1 or before is None:
            for c in group:
                c.verdict.set_result(await self._alone(c.path, sha))
            return
        result = await self._together(group, sha)
        if compare(before, result).ok:
            shared = result.model_copy(update={"group": f"own+{len(group) - 1}"})
            for c in group:
                c.verdict.set_result(shared)
            return
        half = len(group) // 2
        await self._validate(group[:half], before, sha)
        await self._validate(group[half:], before, sha)

    async def _alone(self, path: Path, sha: str) -> TestGroupResult:
        _drop_bytecode(path)
        return await self.run(path, sha)

    async def _together(self, group: list[_Candidate], sha: str) -> TestGroupResult:
        """The suite in the first candidate's copy with the others' changes copied in, which is
        then put back to its own change alone."""
        host, others = group[0].path, group[1:]
        brought = [rel for c in others for rel in c.changes]
        try:
            for c in others:
                for rel, deleted in c.changes.items():
                    target = host / rel
                    if deleted:
                        _remove(target)
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        _remove(target)
                        shutil.copy2(c.path / rel, target, follow_symlinks=False)
            _drop_bytecode(host)
            return await self.run(host, sha)
        finally:
            tracked = set(
                filter(None, _git_z(host, "ls-tree", "-r", "--name-only", "-z", "HEAD", "--", *brought))
            )
            if tracked:
                git(host, "checkout", "-q", "HEAD", "--", *sorted(tracked))
            for rel in brought:
                if rel not in tracked:
                    _remove(host / rel)


def _disjoint(candidates: list[_Candidate]) -> list[list[_Candidate]]:
    """The candidates in groups whose changes touch no file in common, first come first placed (pure)."""
    groups: list[tuple[list[_Candidate], set[str]]] = []
    for c in candidates:
        if any(rel.endswith("/") for rel in c.changes):  # a nested repository: not copied, run alone
            groups.append(([c], {"/"}))
            continue
        home = next((g for g in groups if "/" not in g[1] and not g[1] & set(c.changes)), None)
        if home is None:
            groups.append(([c], set(c.changes)))
        else:
            home[0].append(c)
            home[1].update(c.changes)
    return [g for g, _ in groups]


def _changes(path: Path) -> dict[str, bool]:
    """What the working copy changed against HEAD: path -> whether it was deleted (untracked new
    files included, ignored ones not)."""
    entries = _git_z(path, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    changes = {}
    for entry in entries:
        if len(entry) > 3:
            changes[entry[3:]] = "D" in entry[:2]
    return changes


def _git_z(path: Path, *args: str) -> list[str]:
    # not `git()`: it strips the output, and a porcelain line may begin with a space
    proc = run_git(path, *args)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()[:300]}")
    return [e for e in proc.stdout.split("\0") if e]


def _drop_bytecode(path: Path) -> None:
    """Stale bytecode from the base run must not stand in for changed sources."""
    for cache in Path(path).rglob("__pycache__"):
        if cache.is_dir():
            shutil.rmtree(cache, ignore_errors=True)


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
