"""The Changes port: what a handler does to a working copy it got from the Workspace port — draft an
engine's change (the project's own checks first), apply a drafted patch, commit, read a commit back
as a patch.

Every method is async: git runs off the event loop that all services share in one process (git done
inline stalled every other consumer; issue 23).

`shared.adapters.changes.GitChanges` is the real one (git through the one isolated runner, the
project's checks in the configured sandbox); `tests/support/fake_repos.py` holds one in memory, no git, checks
scripted. Both pass tests/contract/test_changes_contract.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from shared.events.run import ProjectChecks
from shared.ports.engine import Implementation


class PatchConflict(Exception):
    """A patch did not apply to the working copy; `stderr` says why (git's words). The copy is
    left as it was before the attempt."""

    def __init__(self, stderr: str):
        super().__init__(stderr)
        self.stderr = stderr


@dataclass(frozen=True)
class Drafted:
    """An engine's change as a diff against the copy's HEAD ("" when nothing changed), what the
    engine says it did, and what the project's own checks said (None when none ran)."""

    diff: str
    done: Implementation
    checks: ProjectChecks | None = None


@runtime_checkable
class Changes(Protocol):
    async def draft(
        self, path: Path, implement: Callable[[], Awaitable[Implementation]]
    ) -> Drafted:
        """Run `implement` (which edits `path`), then the project's own checks on what it changed
        (repairing what they can), and return the change against the copy's HEAD as a binary diff.
        Files `implement` names are in the diff even when .gitignore matches them. Raises
        ChangeRejectedError when the checks reject the change or the diff cannot be built."""
        ...

    async def head(self, path: Path) -> str:
        """The commit the working copy is at."""
        ...

    async def apply(self, path: Path, patch: str, *, three_way: bool = False) -> None:
        """Apply `patch` to the working tree and index (uncommitted); PatchConflict when it does not
        apply, the copy then clean again."""
        ...

    async def commit(self, path: Path, message: str) -> str | None:
        """Commit everything in the working copy; the new sha, or None when nothing changed."""
        ...

    async def patch_of(self, path: Path, sha: str) -> tuple[str, list[str]]:
        """Commit `sha` as a mailbox patch (what the Workspace port applies) and the files it touches, sorted."""
        ...
