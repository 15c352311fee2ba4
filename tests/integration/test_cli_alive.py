"""`repo-pilot alive`, the health check of the compose file's relay and service containers,
against a real `repo-pilot relay` process on the test's NATS and Postgres."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def alive(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shared.app.cli", "alive"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_alive_follows_a_real_relay_from_start_to_sigterm(cli_env, tmp_path):
    env = {**cli_env, "TMPDIR": str(tmp_path / "tmp")}  # this test's liveness files only
    (tmp_path / "tmp").mkdir()
    before = alive(env)
    assert before.returncode == 1 and "no `repo-pilot service`, `relay` or `up` runs here" in before.stderr

    proc = subprocess.Popen([sys.executable, "-m", "shared.app.cli", "relay"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while (check := alive(env)).returncode != 0:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, check.stdout + check.stderr
            time.sleep(0.2)
        assert f"relay (pid {proc.pid}): running" in check.stdout, check.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    after = alive(env)
    assert after.returncode == 1 and "no `repo-pilot service`" in after.stderr
