"""The Changes port over git: drafting an engine's change through the project's own checks,
applying, committing and reading back commits in a working copy (shared/ports/changes.py).

Every git command goes through `shared.adapters.git` (the one isolated runner); the project's
checks run in the sandbox the composition root configures. Git runs in a worker thread
(`asyncio.to_thread`): the services share one event loop, and a blocking git call stalled them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from shared.adapters.git import GitError, git, git_apply_patch, git_patch
from shared.adapters.project_checks import gate_change
from shared.adapters.workspace import commit_all, format_patch
from shared.events.run import ProjectChecks
from shared.ports.engine import Implementation
from shared.ports.changes import Drafted, PatchConflict
from shared.ports.errors import ChangeRejectedError
from shared.ports.sandbox import Sandbox


class GitChanges:
    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox

    async def gate(self, path: Path, since: str) -> ProjectChecks | None:
        """The project's own checks on what changed since `since`: repair, or ChangeRejectedError."""
        return (await gate_change(path, since, self.sandbox)).as_event()

    async def draft(self, path: Path, implement: Callable[[], Awaitable[Implementation]]) -> Drafted:
        try:
            since = await self.head(path)
            done = await implement()
            checks = await self.gate(path, since)
            diff = await asyncio.to_thread(staged_diff, path, since, getattr(done, "files", None))
            return Drafted(diff, done, checks)
        except GitError as exc:
            raise ChangeRejectedError(f"its patch could not be built: {exc.stderr.strip()[:300] or exc}") from exc

    async def head(self, path: Path) -> str:
        return await asyncio.to_thread(git, path, "rev-parse", "HEAD")

    async def apply(self, path: Path, patch: str, *, three_way: bool = False) -> None:
        await asyncio.to_thread(_apply, path, patch, three_way)

    async def commit(self, path: Path, message: str) -> str | None:
        return await asyncio.to_thread(commit_all, path, message)

    async def patch_of(self, path: Path, sha: str) -> tuple[str, list[str]]:
        return await asyncio.to_thread(_patch_of, path, sha)


def _apply(path: Path, patch: str, three_way: bool) -> None:
    try:
        git_apply_patch(path, "apply", *(["--3way"] if three_way else []), "--whitespace=nowarn", patch=patch)
    except GitError as exc:
        # A three-way apply leaves conflict markers and a half-staged index behind.
        git(path, "reset", "--hard", "-q")
        git(path, "clean", "-fdq")
        raise PatchConflict(exc.stderr) from exc


def _patch_of(path: Path, sha: str) -> tuple[str, list[str]]:
    files = sorted(filter(None, git(path, "show", "--name-only", "--format=", sha).splitlines()))
    return format_patch(path, sha), files


def staged_diff(path: Path, since: str, wrote: list[str] | None) -> str:
    """Stage what changed and return it as a patch against `since`, byte for byte (a diff may end
    in a context line that is a single space; see `git_patch`).

    A file the engine wrote on purpose is staged even when the repository's .gitignore matches it
    (tabulate ignores `.*`, so .github/dependabot.yml vanished silently)."""
    git(path, "add", "--all")
    wrote = [f for f in wrote or [] if (path / f).is_file()]
    if wrote:
        git(path, "add", "--force", "--", *wrote)
    return git_patch(path, "diff", "--cached", "--binary", since)
