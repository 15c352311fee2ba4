"""Stops a test session's embedded servers once the process that started them is gone.

`make test` interrupted (Ctrl-C reaches pytest-xdist's workers too, often before their fixture
teardown runs) or a worker killed would otherwise leave nats-server and PostgreSQL running with
their temp dir. The reaper runs in its own session (a Ctrl-C does not reach it), waits for the
owner's pid to end, then stops what runs under the home and removes it; after a clean teardown it
finds nothing left to do.

    python -m tests.support.reaper OWNER_PID HOME
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_reaper(home: Path) -> subprocess.Popen:
    """Watch this process: when it ends, however it ends, stop the servers under `home` and remove it."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen([sys.executable, "-m", "tests.support.reaper", str(os.getpid()), str(home)], cwd=root,
                            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def main(owner: int, home: Path) -> None:
    while _alive(owner):
        time.sleep(0.5)
    if home.exists():
        from shared.app.embedded import stop_servers

        stop_servers(home)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
