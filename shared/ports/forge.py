"""The Forge port: where a run's branch goes and how it is merged (DESIGN section 4).

`shared.adapters.forge` has the local and plain-remote forges, `shared.adapters.forge_github`
the GitHub one. Every action checks before it acts, so a redelivery never doubles it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class MergeRequest:
    id: str
    url: str
    branch: str
    state: str  # "open" | "merged" | "closed"
    merge_sha: str | None = None
    title: str = ""
    base: str = ""


@runtime_checkable
class Forge(Protocol):
    name: str

    async def publish(self, repo: Path, branch: str) -> bool:
        """Push `branch` from the working copy `repo`; False when the forge already has that commit."""
        ...

    async def find_request(self, branch: str) -> MergeRequest | None:
        """The newest request for `branch`, or None."""
        ...

    async def open_request(self, repo: Path, branch: str, title: str, body: str) -> MergeRequest:
        """The open (or merged) request for `branch`, created only when there is none."""
        ...

    async def merge(self, request: MergeRequest) -> str:
        """Merge the request; an already merged one returns its merge sha."""
        ...
