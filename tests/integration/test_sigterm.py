"""SIGTERM (what `docker stop` sends) is a clean stop: a real `repo-pilot service analyzer` process
stops consuming, finishes or releases the step in hand, flushes its spans to a local OTLP receiver
(real protobuf) and exits 0; restarted, it completes the run's step exactly once and the run ends."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.app.runtime import PIPELINE_SERVICES, System
from tests.conftest import make_git_repo
from tests.support.bus_harness import eventually, running_relay
from tests.support.otlp import otlp_receiver
from tests.support.pipeline import wait_for_run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def start_service(env: dict, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shared.app.cli", "service", name], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=60)  # a hang fails here; the clean stop takes seconds
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"no exit within 60 s of {signal.Signals(sig).name}:\n{out}") from None
    return proc.returncode, out


async def types_in(store, stream_id: str) -> list[str]:
    return [e.type for e in await store.read_stream(stream_id)]


async def test_sigterm_stops_a_service_cleanly_and_flushes_its_spans(store, nats_client, bus_names, cli_env, settings,
                                                                     tmp_path):
    repo = make_git_repo(tmp_path / "target", {"app.py": "import os\n\n\ndef main():\n    return os.getcwd()\n"})
    requested = subprocess.run([sys.executable, "-m", "shared.app.cli", "request", str(repo), "--categories",
                                "security"], env=cli_env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()

    with otlp_receiver() as receiver:
        # Spans leave only when the process flushes on its way out (the batch delay is 10 minutes).
        env = {**cli_env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "600000"}
        async with running_relay(store, nats_client, bus_names):
            proc = start_service(env, "analyzer")
            try:
                deadline = time.monotonic() + 120
                while "StepStarted" not in await types_in(store, run_id):
                    assert proc.poll() is None, proc.stdout.read()
                    assert time.monotonic() < deadline, "the analyzer never started the step"
                    await asyncio.sleep(0.05)
                code, out = await asyncio.to_thread(stop, proc, signal.SIGTERM)
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert code == 0, out
            assert "stopped (SIGTERM)" in out
            spans = [span for service, span in receiver.spans() if service == "analyzer"]
            assert any(span.name == "analyzer handle PipelineRequested" for span in spans), \
                [s.name for s in spans]

            # Finished within the grace, or released: either way, with the analyzer restarted (a new
            # container) and the other services up, the run goes on to its end, the step done once.
            again = start_service(cli_env, "analyzer")
            try:
                await eventually(lambda: _has(store, run_id, "RepoAnalyzed"), timeout=120,
                                 what="RepoAnalyzed after the restart")
                rest = [name for name in PIPELINE_SERVICES if name != "analyzer"]
                async with System(settings, services=rest, relay=False, projector=False):
                    run, _ = await wait_for_run(store, run_id, timeout=600)
            finally:
                code, out = await asyncio.to_thread(stop, again, signal.SIGTERM)
            assert code == 0, out
    types = await types_in(store, run_id)
    assert types.count("RepoAnalyzed") == 1, types
    assert "PipelineFailed" not in types, types
    assert run["status"] == "COMPLETED", (run, types)


async def _has(store, run_id: str, event_type: str) -> bool:
    return event_type in await types_in(store, run_id)
