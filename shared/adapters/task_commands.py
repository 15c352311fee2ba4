"""Running a command with a time limit through the project's sandbox (`shared.adapters.sandbox`).

Two kinds of command, two sets of rights:

- **task scripts** (run_tests.sh during validation) run in `LocalSandbox` with network and the
  host filesystem: they install packages (`uv pip install`) and read the task folder;
- **the agent's shell** runs in the Docker sandbox (no network, only the workspace mounted) when
  an engine answers with the sandbox image, else in `LocalSandbox` confined to its workspace with
  no network unless the attempt allows it (`--agent-network`).

Either way: its own process group (killed whole at the timeout), resource limits, a throw-away
HOME and no secrets in the environment. The address-space limit is raised above the sandbox
default because test toolchains (Go, Node's V8, cargo) reserve far more virtual memory than they use.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.adapters.sandbox import DEFAULT_IMAGE, DockerSandbox, LocalSandbox, Sandbox, docker_available
from shared.common.tasks import run_from_thread

log = logging.getLogger(__name__)
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


def confinement_args(sandbox: Any, *, network: bool, host_fs: bool) -> dict[str, Any]:
    """The rights to ask `sandbox.run` for, as far as this sandbox takes them: a sandbox without
    per-call rights (no `network` keyword) is called without them."""
    accepted = inspect.signature(sandbox.run).parameters
    return {k: v for k, v in {"network": network, "host_fs": host_fs}.items() if k in accepted}


async def run(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None, *,
              sandbox: Sandbox | None = None, network: bool = True, host_fs: bool = True) -> CommandResult:
    """Run `cmd` in `cwd`, killed after `timeout` seconds; never raises for a failing command.
    Defaults are a task script's rights (network, host filesystem)."""
    sandbox = sandbox or LocalSandbox(memory_mb=MEMORY_MB)
    result = await sandbox.run(cmd, cwd=cwd, timeout=timeout, env=env,
                               **confinement_args(sandbox, network=network, host_fs=host_fs))
    return CommandResult(result.exit_code, result.stdout, result.stderr, result.timed_out, result.duration)


def run_sync(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> CommandResult:
    """`run` for synchronous callers, also from a thread that already runs an event loop. Under
    `shared.common.tasks.in_thread`, cancelling its caller kills the command and raises
    `asyncio.CancelledError` here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_from_thread(run(cmd, cwd, timeout, env))
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(contextvars.copy_context().run, run_from_thread, run(cmd, cwd, timeout, env)).result()


def agent_sandbox(backend: str = "auto") -> Sandbox:
    """Docker when an engine answers with the sandbox image (and `backend` allows), else local."""
    if backend != "local" and docker_available(DEFAULT_IMAGE):
        log.info("agent shell: docker sandbox, image %s", DEFAULT_IMAGE)
        return DockerSandbox(DEFAULT_IMAGE)
    return LocalSandbox(memory_mb=MEMORY_MB)


def uv_bin_dir() -> str | None:
    """The folder holding the `uv` executable this project depends on (None when it is missing)."""
    try:
        from uv import find_uv_bin

        return os.path.dirname(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        return os.path.dirname(found) if found else None


def base_env(extra: dict | None = None) -> dict[str, str]:
    """Toolchain locations worth keeping (the sandbox drops everything not allow-listed), with
    `uv` on PATH: CooperBench's run_tests.sh scripts call `uv venv` and `uv pip install`."""
    keep = ("VIRTUAL_ENV", "GOPATH", "GOROOT", "GOCACHE", "GOMODCACHE", "GOFLAGS", "CARGO_HOME",
            "RUSTUP_HOME", "NODE_PATH", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k in keep}
    path = os.environ.get("PATH", os.defpath)
    uv_dir = uv_bin_dir()
    if uv_dir and uv_dir not in path.split(os.pathsep):
        path = uv_dir + os.pathsep + path
    env["PATH"] = path
    if extra:
        env.update(extra)
    return env
