"""The Sandbox port: where tests and generated code run (DESIGN section 4).

`shared.adapters.sandbox` has the local subprocess and the Docker implementations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass
class SandboxResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    duration: float


@runtime_checkable
class Sandbox(Protocol):
    name: str

    async def run(
        self, cmd: list[str], cwd: Path, timeout: float = 300, env: dict | None = None,
        *, network: bool = False, writable: tuple[str, ...] = (), host_fs: bool = False,
    ) -> SandboxResult:
        """Run `cmd` in `cwd`, killed after `timeout` seconds (`timed_out` then True); `env` is
        added to a scrubbed environment, secrets never pass. No network unless `network`; only
        `cwd` and `writable` writable, unless `host_fs` (where the backend can confine that)."""
        ...
