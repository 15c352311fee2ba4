"""The Workspace port: a run's working copy, rebuilt from events alone (DESIGN section 4).

`shared.adapters.workspace.Workspace` is the real one (mirrors + local clones under
REPO_PILOT_HOME); `tests/support/fake_repos.py` holds one with commits in memory (no git). Both
pass tests/contract/test_workspace_contract.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Materialized:
    """A repository made available locally: its mirror and the commit a run starts from."""

    source: str  # the original path or URL, as given
    mirror: Path
    base_sha: str
    default_branch: str
    ref: str | None = None


@runtime_checkable
class Workspace(Protocol):
    async def materialize(self, source: str, ref: str | None = None) -> Materialized:
        """Make `source` available and resolve `ref` (the default branch when None); StepError
        with a hint for a missing path, not a repository, an unknown ref."""
        ...

    async def worktree(
        self,
        run_id: str,
        source: str,
        base_sha: str,
        patches: Sequence[str] = (),
        branch: str | None = None,
    ) -> Path:
        """A fresh working copy named `run_id` at `base_sha` with each patch applied as one commit
        (`branch` checked out when given); a second call discards the old copy."""
        ...

    async def remove(self, run_id: str) -> None:
        """Delete the working copy named `run_id` (nothing happens when there is none)."""
        ...
