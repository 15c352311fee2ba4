"""What `repo-pilot alive` (the pilot containers' health check) concludes from the liveness files
the long-running commands write: a real event loop writing, a real exited process for a gone one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from shared.app.liveness import beating, check, write_beat

pytestmark = pytest.mark.unit


async def test_a_beating_process_is_alive_while_the_block_runs_and_gone_after(tmp_path):
    state = {"relay": "", "projector": ""}
    async with beating("relay", lambda: dict(state), every=0.01, directory=tmp_path) as path:
        (report,) = check(tmp_path)
        assert report.role == "relay" and report.ok, report
        state["projector"] = "restarting in 4s after: ConnectionRefusedError"
        first = json.loads(path.read_text())["at"]
        while json.loads(path.read_text())["at"] == first:  # the next beat carries the new state
            await asyncio.sleep(0.01)
        (report,) = check(tmp_path)
        assert not report.ok and report.problems == ["projector: restarting in 4s after: ConnectionRefusedError"]
    assert check(tmp_path) == []  # a stopped process is not a hung one


async def test_a_hung_event_loop_stops_renewing_its_file_and_counts_as_hung(tmp_path):
    async with beating("analyzer", dict, every=0.01, directory=tmp_path) as path:
        await asyncio.sleep(0.05)
        time.sleep(0.1)  # the loop blocked: no beat can run meanwhile
        at = json.loads(path.read_text())["at"]
        time.sleep(0.1)
        assert json.loads(path.read_text())["at"] == at
        (report,) = check(tmp_path, stale_after=60, now=at + 61)
        assert not report.ok and "hung" in report.problems[0]
        (report,) = check(tmp_path, stale_after=60, now=at + 59)
        assert report.ok


def test_the_file_of_a_process_that_is_gone_is_dropped(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_beat(tmp_path / "alive-tester.json", {})
    data = json.loads((tmp_path / "alive-tester.json").read_text())
    (tmp_path / "alive-tester.json").write_text(json.dumps({**data, "pid": gone.pid}))
    assert check(tmp_path) == []
    assert not (tmp_path / "alive-tester.json").exists()
