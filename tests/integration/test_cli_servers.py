"""What the embedded servers leave behind: `repo-pilot servers` lists them, `servers stop` stops them,
`run` says how; the demo removes its temp folder; an interrupted test session leaves no servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "shared.app.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet, e.g. a detached server whose parent is gone, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_until(done, what: str, limit: float = 60) -> None:
    """Wait for `done()` (a deadline against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.2)


@pytest.mark.e2e
def test_run_says_what_it_leaves_running_and_servers_lists_and_stops_it(tmp_path):
    """Nothing configured: `run` starts the embedded NATS and PostgreSQL, leaves them for later
    commands and says so; `servers` shows both with pids; `servers stop` ends both processes."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "REPO_PILOT_")) and k not in ("NATS_URL", "DATABASE_URL")}
    env.update(REPO_PILOT_HOME=str(home), COLUMNS="200",
               REPO_PILOT_TOOLS_HOME=os.environ.get("REPO_PILOT_TOOLS_HOME", str(tmp_path / "tools")))
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)  # fails fast: no commits
    try:
        ran = cli(env, "run", str(empty), "--timeout", "120")
        assert ran.returncode == 1, ran.stdout + ran.stderr
        assert "keep running for later commands" in ran.stderr and "`repo-pilot servers stop`" in ran.stderr

        listed = cli(env, "servers")
        assert listed.returncode == 0, listed.stderr
        nats_pid = json.loads((home / "nats" / "server.json").read_text())["pid"]
        pg_pid = int((home / "postgres" / "postmaster.pid").read_text().split()[0])
        rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if line.count("│") > 3}
        assert str(nats_pid) in rows["NATS"] and str(pg_pid) in rows["PostgreSQL"]
        assert "servers stop" in listed.stdout

        stopped = cli(env, "servers", "stop")
        assert stopped.returncode == 0 and "nats" in stopped.stdout and "postgres" in stopped.stdout, \
            stopped.stdout + stopped.stderr
        _wait_until(lambda: not _alive(nats_pid) and not _alive(pg_pid), "both servers ending")
        assert "no embedded servers run" in cli(env, "servers").stdout
    finally:
        cli(env, "servers", "stop")


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only: pgserver runs PostgreSQL as its own user then")
def test_servers_stop_stops_postgres_when_its_user_can_no_longer_reach_the_data(tmp_path):
    """As root, PostgreSQL runs as pgserver's user; a parent directory made private after the start
    (pytest resets /tmp/pytest-of-root to 0700 whenever a session starts) kept `servers stop` from
    stopping it (pg_ctl, run as that user, could not reach the data directory)."""
    private = tmp_path / "private"
    home = private / "home"
    home.mkdir(parents=True)
    start = "import sys; from pathlib import Path; from shared.app.embedded import ensure_postgres; " \
            "ensure_postgres(Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", start, str(home)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    pid = int((home / "postgres" / "postmaster.pid").read_text().split()[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPO_PILOT_")}
    env["REPO_PILOT_HOME"] = str(home)
    try:
        private.chmod(0o700)
        stopped = cli(env, "servers", "stop")
        assert stopped.returncode == 0 and "postgres" in stopped.stdout, stopped.stdout + stopped.stderr
        _wait_until(lambda: not _alive(pid), "postgres ending")
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGINT)


def test_demo_removes_its_temporary_folder(cli_env):
    """The demo's repository lives in a temp folder that is gone when the command ends (here it
    gives up following after a second: the folder goes either way)."""
    proc = cli(cli_env, "demo", "--timeout", "1")
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("demo repository:")]
    repo = Path(line.split(":", 1)[1].split(" (removed")[0].strip())
    assert repo.name == "inventory" and "--keep keeps it" in line
    assert not repo.parent.exists()


def test_a_killed_test_session_leaves_no_servers(tmp_path):
    """The reaper tests/conftest.py starts with the session's servers stops them, and removes
    their folder, once the session's process is gone, even when it never ran its teardown."""
    home = tmp_path / "servers home"
    code = ("import sys, time; from pathlib import Path; from tests.support.reaper import start_reaper; "
            "from shared.app.embedded import ensure_nats; home = Path(sys.argv[1]); start_reaper(home); "
            "ensure_nats(home); print('up', flush=True); time.sleep(600)")
    session = subprocess.Popen([sys.executable, "-c", code, str(home)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert session.stdout.readline().strip() == "up"
        nats_pid = json.loads((home / "nats" / "server.json").read_text())["pid"]
        assert _alive(nats_pid)
    finally:
        session.send_signal(signal.SIGKILL)  # no teardown at all
        session.wait()
    _wait_until(lambda: not _alive(nats_pid) and not home.exists(), "the reaper stopping nats-server")
