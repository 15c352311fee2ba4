"""The consumer runtime under faults (issue 13), against real Postgres and real NATS JetStream:
a deleted stream takes the durable consumer with it and the service recreates it; a step that
fails because the runtime is stopping is released for redelivery, not recorded as the user's error;
an event too large to store fails the step at once with the reason."""

from __future__ import annotations

import asyncio

import pytest

from shared.events import Envelope, RepoAnalyzed, make_event, new_run_stream
from shared.messaging.consumer import Route, ServiceRuntime
from shared.ports.errors import StepError
from tests.support.bus_harness import eventually, requested, running_relay

pytestmark = pytest.mark.integration

SERVICE = "analyzer"


def _analyzed(event: Envelope, spec: str = "s") -> Envelope:
    payload = RepoAnalyzed(base_sha="abc", default_branch="main", repo_path=event.data.repo,
                           specification=spec, graph="g", architecture="a")
    return make_event(payload, event.stream_id, cause=event, service=SERVICE)


async def _request(store) -> str:
    stream = new_run_stream()
    await store.append(stream, [requested(stream)], 0)
    return stream


async def _types(store, stream: str) -> list[str]:
    return [e.type for e in await store.read_stream(stream)]


@pytest.fixture
async def start(store, nats_url, bus_names):
    started: list[ServiceRuntime] = []

    async def make(handler, **options) -> ServiceRuntime:
        runtime = ServiceRuntime(SERVICE, [Route("PipelineRequested", handler, step="analyze")], store, None,
                                 nats_url=nats_url, **bus_names, **options)
        await runtime.start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        await runtime.stop()


async def test_service_recreates_its_durable_consumer_after_the_stream_is_deleted(
        store, nats_client, bus_names, start):
    async def analyze(event, deps):
        return [_analyzed(event)]

    runtime = await start(analyze)
    runtime.watch_interval = 0.2
    js = nats_client.jetstream()
    async with running_relay(store, nats_client, bus_names):
        first = await _request(store)
        await eventually(lambda: _has(store, first, "StepCompleted"), what="first run handled")
        await js.delete_stream(bus_names["stream_name"])  # takes the durable consumer with it
        await eventually(lambda: _consumer_exists(js, bus_names["stream_name"]), what="consumer recreated")
        second = await _request(store)
        await eventually(lambda: _has(store, second, "StepCompleted"), timeout=40, what="run after deletion")
    assert await _types(store, first) == ["PipelineRequested", "StepStarted", "RepoAnalyzed", "StepCompleted"]
    assert runtime.healthy == ""


async def test_a_step_failing_while_stopping_is_released_not_recorded(store, nats_client, bus_names, start):
    began = asyncio.Event()
    runtime: ServiceRuntime | None = None

    async def interrupted(event, deps):
        began.set()
        while not runtime.stopping:  # what Ctrl-C does to a git child: the step fails mid-way
            await asyncio.sleep(0.05)
        raise StepError("patch 2 does not apply: base commit changed")

    runtime = await start(interrupted)
    async with running_relay(store, nats_client, bus_names):
        run = await _request(store)
        await asyncio.wait_for(began.wait(), 20)
        await runtime.stop()
    assert "StepFailed" not in await _types(store, run) and "PipelineFailed" not in await _types(store, run)

    async def analyze(event, deps):
        return [_analyzed(event)]

    await start(analyze)  # the released step is delivered again and completes
    async with running_relay(store, nats_client, bus_names):
        await eventually(lambda: _has(store, run, "StepCompleted"), timeout=40, what="redelivered step")


async def test_an_event_too_large_to_store_fails_the_step_at_once(store, nats_client, bus_names, start):
    calls = []

    async def bloated(event, deps):
        calls.append(event)
        return [_analyzed(event, spec="z" * 2_000_000)]

    await start(bloated)
    async with running_relay(store, nats_client, bus_names):
        run = await _request(store)
        await eventually(lambda: _has(store, run, "PipelineFailed"), what="failure recorded")
    events = await store.read_stream(run)
    failed = next(e for e in events if e.type == "StepFailed")
    assert "'data.specification'" in failed.data.error and not failed.data.retryable
    assert len(calls) == 1  # not retried: the same outputs would be refused again


async def _has(store, stream: str, type_name: str) -> bool:
    return type_name in await _types(store, stream)


async def _consumer_exists(js, stream_name: str) -> bool:
    try:
        await js.consumer_info(stream_name, SERVICE)
        return True
    except Exception:
        return False


async def test_one_slow_delivery_does_not_hold_up_the_others(store, nats_client, bus_names, start):
    """With max_workers > 1 (the tester's REPO_PILOT_TESTER_CONCURRENCY) a slow step runs while
    later ones complete; with one worker they would wait behind it."""
    release = asyncio.Event()
    slow_repo = "/tmp/slow-repo"

    async def analyze(event, deps):
        if event.data.repo == slow_repo:
            await asyncio.wait_for(release.wait(), 60)
        return [_analyzed(event)]

    await start(analyze, max_workers=3)
    async with running_relay(store, nats_client, bus_names):
        slow = new_run_stream()
        await store.append(slow, [requested(slow, repo=slow_repo)], 0)
        await eventually(lambda: _has(store, slow, "StepStarted"), what="slow step started")
        quick = [await _request(store) for _ in range(2)]
        for run in quick:
            await eventually(lambda r=run: _has(store, r, "StepCompleted"), what="quick steps done meanwhile")
        assert "StepCompleted" not in await _types(store, slow)
        release.set()
        await eventually(lambda: _has(store, slow, "StepCompleted"), what="slow step done")


def test_git_runs_outside_the_terminals_session(tmp_path):
    """Ctrl-C goes to the terminal's foreground process group: git must not be in it, or an
    interrupted merge fails as a step (with a wrong cause) before the runtime can release it."""
    import os

    from shared.adapters.git import run_git
    from tests.conftest import make_git_repo

    repo = make_git_repo(tmp_path / "r", {"a.txt": "a\n"})
    proc = run_git(repo, "-c", "alias.sid=!ps -o sid= -p $$", "sid")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) != os.getsid(0)
