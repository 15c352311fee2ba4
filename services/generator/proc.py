"""Running a command with a time limit through the project's sandbox (`shared.adapters.sandbox`).

Validation and the agent's shell both go through `LocalSandbox`: its own process group
(killed whole at the timeout), resource limits, a throw-away HOME and no secrets in the
environment. The address-space limit is raised above the sandbox default because test
toolchains (Go, Node's V8, cargo) reserve far more virtual memory than they use.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from shared.adapters.sandbox import LocalSandbox

MEMORY_MB = 16_384


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    duration: float = 0.0

    @property
    def output(self) -> str:
        return self.stdout + (("\n" + self.stderr) if self.stderr else "")


async def run(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> CommandResult:
    """Run `cmd` in `cwd`, killed after `timeout` seconds; never raises for a failing command."""
    # Task scripts and toolchain caches live outside `cwd`: the host filesystem stays visible
    # (still no network, own pid namespace, no secrets; see docs/security.md).
    result = await LocalSandbox(memory_mb=MEMORY_MB).run(cmd, cwd=cwd, timeout=timeout, env=env, host_fs=True)
    return CommandResult(result.exit_code, result.stdout, result.stderr, result.timed_out, result.duration)


def run_sync(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> CommandResult:
    """`run` for synchronous callers, also from a thread that already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run(cmd, cwd, timeout, env))
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run(cmd, cwd, timeout, env)).result()


def base_env(extra: dict | None = None) -> dict[str, str]:
    """Toolchain locations worth keeping (the sandbox drops everything not allow-listed)."""
    keep = ("VIRTUAL_ENV", "GOPATH", "GOROOT", "GOCACHE", "GOMODCACHE", "GOFLAGS", "CARGO_HOME",
            "RUSTUP_HOME", "NODE_PATH", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k in keep}
    if extra:
        env.update(extra)
    return env
