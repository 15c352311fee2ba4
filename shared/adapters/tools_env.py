"""An isolated environment for tools Repo Pilot runs but must not import: pixee's codemodder and semgrep.

They pin shared libraries tightly (OpenTelemetry, pydantic, libcst, click…), so installing them
beside Repo Pilot would hold its own libraries back. Instead a venv under `<tools home>/codemodder`
is created with `pip install` on first use and reused after. It is built in place under an
exclusive lock and counts as ready only once its marker file exists (a half-built env is wiped and
rebuilt). A failed install (offline, no index) is remembered for `RETRY_AFTER` seconds, so runs
without a network do not each wait for pip to give up; `ToolsUnavailable` says why.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("codemodder==6.5.5", "semgrep")
ENV_NAME = "codemodder"
READY = ".repo-pilot-ready"
FAILED = ".repo-pilot-failed.json"
RETRY_AFTER = 3600.0
INSTALL_TIMEOUT = 900.0
# semgrep (under codemodder) otherwise waits minutes on the network for these.
QUIET_SEMGREP = {"SEMGREP_SEND_METRICS": "off", "SEMGREP_ENABLE_VERSION_CHECK": "0"}


class ToolsUnavailable(Exception):
    """The tools environment could not be created; the message says why."""


def tools_env_dir(tools_home: Path) -> Path:
    return Path(tools_home) / ENV_NAME


def tool_env_vars(env_dir: Path) -> dict[str, str]:
    """The environment codemodder runs with: the tools' bin first on PATH (it calls `semgrep`)."""
    return {
        **os.environ,
        **QUIET_SEMGREP,
        "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(env_dir),
    }


def _tail(text: str, lines: int = 6) -> str:
    kept = [line.strip() for line in text.splitlines() if line.strip() and "WARNING: Location" not in line]
    return " | ".join(kept[-lines:])[-600:]


def ensure_tools(tools_home: Path, packages: tuple[str, ...] = PACKAGES, pip_options: tuple[str, ...] = ()) -> Path:
    """The ready tools env (its directory), creating it on first use; raises ToolsUnavailable."""
    env_dir = tools_env_dir(tools_home)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(env_dir.parent / f"{ENV_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing: wait for it
        if (env_dir / READY).is_file():
            return env_dir
        failed = env_dir.parent / FAILED
        if failed.is_file():
            record = json.loads(failed.read_text())
            if time.time() - record.get("at", 0) < RETRY_AFTER and record.get("packages") == list(packages):
                raise ToolsUnavailable(record["reason"])
        shutil.rmtree(env_dir, ignore_errors=True)
        reason = _build(env_dir, packages, pip_options)
        if reason is None:
            failed.unlink(missing_ok=True)
            return env_dir
        shutil.rmtree(env_dir, ignore_errors=True)
        failed.write_text(json.dumps({"at": time.time(), "reason": reason, "packages": list(packages)}))
        raise ToolsUnavailable(reason)


def _build(env_dir: Path, packages: tuple[str, ...], pip_options: tuple[str, ...]) -> str | None:
    made = subprocess.run([sys.executable, "-m", "venv", str(env_dir)], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    if made.returncode != 0:
        return f"could not create a venv for the tools: {_tail(made.stderr)}"
    cmd = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--retries", "1", "--timeout", "30", *pip_options, *packages]  # fmt: skip
    try:
        installed = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return f"`pip install {' '.join(packages)}` timed out after {INSTALL_TIMEOUT:g}s"
    if installed.returncode != 0:
        return f"`pip install {' '.join(packages)}` failed (offline?): {_tail(installed.stdout + installed.stderr)}"
    for tool in ("codemodder", "semgrep"):
        if any(p.split("=")[0] == tool for p in packages) and not (env_dir / "bin" / tool).exists():
            return f"the install did not provide `{tool}`"
    (env_dir / READY).write_text("\n".join(packages) + "\n")
    return None
