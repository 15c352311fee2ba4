"""The consumer runtime against real Postgres and real NATS JetStream, with the relay running."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest

from shared.events import Envelope, RepoAnalyzed, make_event
from shared.events.run import LlmCallRecorded
from shared.messaging.consumer import Route, ServiceRuntime
from shared.ports.errors import StepError
from tests.support.bus_harness import eventually, requested, running_relay

pytestmark = pytest.mark.integration

SERVICE = "analyzer"


@dataclass
class Deps:
    """What the test handlers share with the test: calls seen and how to behave."""

    calls: list[Envelope] = field(default_factory=list)
    hang_first: bool = False
    delay: float = 0.0


def analyzed(event: Envelope) -> Envelope:
    payload = RepoAnalyzed(base_sha="abc", default_branch="main", repo_path=event.data.repo,
                           specification="s", graph="g", architecture="a")
    return make_event(payload, event.stream_id, cause=event, service=SERVICE)


async def analyze(event: Envelope, deps: Deps) -> list[Envelope]:
    deps.calls.append(event)
    if deps.hang_first and len(deps.calls) == 1:
        await asyncio.sleep(3600)  # "killed" by stopping the runtime
    if deps.delay:
        await asyncio.sleep(deps.delay)
    return [analyzed(event)]


async def always_broken(event: Envelope, deps: Deps) -> list[Envelope]:
    deps.calls.append(event)
    raise RuntimeError("disk on fire")


async def user_error(event: Envelope, deps: Deps) -> list[Envelope]:
    deps.calls.append(event)
    raise StepError("not a git repository: /tmp/repo", hint="pass the path of a git checkout")


@pytest.fixture
async def relay(store, nats_client, bus_names):
    async with running_relay(store, nats_client, bus_names) as r:
        yield r


@pytest.fixture
async def runtimes(store, nats_url, bus_names):
    started: list[ServiceRuntime] = []

    async def make(handler, deps: Deps, *, name: str = SERVICE, **options) -> ServiceRuntime:
        routes = [Route("PipelineRequested", handler, step="analyze")]
        runtime = ServiceRuntime(name, routes, store, deps, nats_url=nats_url, **bus_names, **options)
        await runtime.start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        await runtime.stop()


async def types_in(store, stream_id: str) -> list[str]:
    return [e.type for e in await store.read_stream(stream_id)]


async def count_of(store, stream_id: str, type_name: str) -> int:
    return (await types_in(store, stream_id)).count(type_name)


async def append_request(store) -> Envelope:
    event = requested()
    [stored] = await store.append(event.stream_id, [event])
    return stored


async def test_handler_output_is_appended_once_with_step_bookkeeping(store, relay, runtimes):
    deps = Deps()
    await runtimes(analyze, deps)
    cause = await append_request(store)
    await eventually(lambda: _has(store, cause.stream_id, "StepCompleted"), what="step completed")
    events = await store.read_stream(cause.stream_id)
    assert [e.type for e in events] == ["PipelineRequested", "StepStarted", "RepoAnalyzed", "StepCompleted"]
    started, output, completed = events[1:]
    assert started.data.step == "analyze" and started.data.attempt == 1
    assert output.causation_id == cause.event_id and completed.causation_id == cause.event_id
    assert await store.is_processed(SERVICE, cause.event_id)
    assert len(deps.calls) == 1


async def _has(store, stream_id: str, type_name: str) -> bool:
    return await count_of(store, stream_id, type_name) > 0


async def test_redelivered_event_does_not_duplicate_outputs(store, relay, runtimes, nats_client, bus_names):
    deps = Deps()
    runtime = await runtimes(analyze, deps)
    cause = await append_request(store)
    await eventually(lambda: _has(store, cause.stream_id, "StepCompleted"), what="first handling")
    # Deliver the same event again: a second message with another Nats-Msg-Id escapes the dedupe.
    await nats_client.jetstream().publish(
        cause.subject(bus_names["subject_prefix"]), cause.to_json().encode(),
        stream=bus_names["stream_name"], headers={"Nats-Msg-Id": f"again-{cause.event_id}"},
    )
    marker = await append_request(store)  # handled after the duplicate (one at a time, in order)
    await eventually(lambda: _has(store, marker.stream_id, "StepCompleted"), what="next event")

    async def no_heartbeat() -> None:
        pass

    assert await runtime.process(cause, 3, no_heartbeat) == "ack"
    assert await count_of(store, cause.stream_id, "RepoAnalyzed") == 1
    assert await count_of(store, cause.stream_id, "StepStarted") == 1
    assert [e.event_id for e in deps.calls] == [cause.event_id, marker.event_id]


async def test_handler_killed_midway_is_retried_and_completes_once(store, relay, runtimes):
    deps = Deps(hang_first=True)
    first = await runtimes(analyze, deps, ack_wait=2.0)
    cause = await append_request(store)
    await eventually(lambda: _true(len(deps.calls) == 1), what="handler started")
    await asyncio.sleep(3.0)  # longer than ack_wait: heartbeats must keep the message ours
    assert len(deps.calls) == 1
    await first.stop()  # the handler dies mid-way, unacked

    await runtimes(analyze, deps, ack_wait=2.0)
    await eventually(lambda: _has(store, cause.stream_id, "StepCompleted"), what="retried handling")
    events = await store.read_stream(cause.stream_id)
    assert [e.data.attempt for e in events if e.type == "StepStarted"] == [1, 2]
    assert [e.type for e in events].count("RepoAnalyzed") == 1
    assert len(deps.calls) == 2


async def _true(value: bool) -> bool:
    return value


async def test_last_attempt_records_the_failure_and_stops_redelivery(
    store, relay, runtimes, nats_client, bus_names
):
    deps = Deps()
    await runtimes(always_broken, deps, max_deliver=3, ack_wait=2.0, backoff=(0.05,))
    cause = await append_request(store)
    await eventually(lambda: _has(store, cause.stream_id, "PipelineFailed"), what="failure recorded")
    events = await store.read_stream(cause.stream_id)
    [failed] = [e for e in events if e.type == "StepFailed"]
    [pipeline_failed] = [e for e in events if e.type == "PipelineFailed"]
    assert failed.data.retryable and failed.data.attempt == 3 and "disk on fire" in failed.data.error
    assert pipeline_failed.data.step == "analyze" and "disk on fire" in pipeline_failed.data.error
    assert [e.data.attempt for e in events if e.type == "StepStarted"] == [1, 2, 3]
    assert await store.is_processed(SERVICE, cause.event_id)
    await asyncio.sleep(2.5)  # past ack_wait: a message that was not terminated would come back
    assert len(deps.calls) == 3
    info = await nats_client.jetstream().consumer_info(bus_names["stream_name"], SERVICE)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_step_error_is_recorded_at_once_without_retry(store, relay, runtimes):
    deps = Deps()
    await runtimes(user_error, deps, max_deliver=3, ack_wait=2.0, backoff=(0.05,))
    cause = await append_request(store)
    await eventually(lambda: _has(store, cause.stream_id, "PipelineFailed"), what="failure recorded")
    events = await store.read_stream(cause.stream_id)
    assert [e.type for e in events] == ["PipelineRequested", "StepStarted", "StepFailed", "PipelineFailed"]
    assert not events[2].data.retryable and events[2].data.error == "not a git repository: /tmp/repo"
    assert events[3].data.hint == "pass the path of a git checkout"
    marker = await append_request(store)
    await eventually(lambda: _has(store, marker.stream_id, "PipelineFailed"), what="next event")
    assert [e.event_id for e in deps.calls] == [cause.event_id, marker.event_id]


async def user_error_after_model_calls(event: Envelope, deps: Deps) -> list[Envelope]:
    deps.calls.append(event)
    exc = StepError("the model answered junk three times", hint="try another model")
    exc.records = [LlmCallRecorded(purpose="analyze", model="m", prompt_hash="h", response="junk")]
    raise exc


async def test_what_a_failed_step_asks_to_record_is_stored_with_the_failure(store, relay, runtimes):
    await runtimes(user_error_after_model_calls, Deps())
    cause = await append_request(store)
    await eventually(lambda: _has(store, cause.stream_id, "PipelineFailed"), what="failure recorded")
    events = await store.read_stream(cause.stream_id)
    assert [e.type for e in events] == [
        "PipelineRequested", "StepStarted", "LlmCallRecorded", "StepFailed", "PipelineFailed"]
    assert events[2].data.response == "junk" and events[2].causation_id == cause.event_id
    assert await store.is_processed(SERVICE, cause.event_id)  # one transaction with the tracking row


async def test_replicas_share_the_durable_and_split_the_work(store, relay, runtimes):
    one, two = Deps(delay=0.05), Deps(delay=0.05)
    await runtimes(analyze, one)
    await runtimes(analyze, two)
    causes = [await append_request(store) for _ in range(20)]

    async def all_done() -> bool:
        return all([await _has(store, c.stream_id, "StepCompleted") for c in causes])

    await eventually(all_done, what="all handled")
    seen_one = {e.event_id for e in one.calls}
    seen_two = {e.event_id for e in two.calls}
    assert seen_one and seen_two
    assert not seen_one & seen_two
    assert seen_one | seen_two == {c.event_id for c in causes}
    for cause in causes:
        assert await count_of(store, cause.stream_id, "RepoAnalyzed") == 1


async def test_invalid_message_is_terminated_with_a_clear_error(
    store, relay, runtimes, nats_client, bus_names, caplog
):
    deps = Deps()
    await runtimes(analyze, deps)
    subject = f"{bus_names['subject_prefix']}.run.pipeline_requested"
    bad = requested().model_dump(mode="json")
    bad["data"] = {"repo": 42}
    js = nats_client.jetstream()
    with caplog.at_level(logging.ERROR, logger="repo_pilot.consumer"):
        import json

        await js.publish(subject, json.dumps(bad).encode(), stream=bus_names["stream_name"])
        marker = await append_request(store)
        await eventually(lambda: _has(store, marker.stream_id, "StepCompleted"), what="next event")
    assert "malformed PipelineRequested event: field 'repo'" in caplog.text
    assert [e.event_id for e in deps.calls] == [marker.event_id]


async def test_existing_durable_is_updated_to_the_new_config(store, runtimes, nats_client, bus_names):
    first = await runtimes(analyze, Deps(), ack_wait=60.0, max_deliver=5)
    await first.stop()
    await runtimes(analyze, Deps(), ack_wait=2.0, max_deliver=2)
    info = await nats_client.jetstream().consumer_info(bus_names["stream_name"], SERVICE)
    assert info.config.ack_wait == 2.0 and info.config.max_deliver == 2
    assert info.config.filter_subjects == [f"{bus_names['subject_prefix']}.run.pipeline_requested"]


async def test_the_consumer_logs_a_lost_connection_but_not_its_own_stop(store, bus_names, tmp_path, caplog):
    """The connection callbacks find the broker's client through FastStream's public
    `connection` (not the private `_connection`): a stop is quiet, a server that dies is not."""
    from shared.app.embedded import ensure_nats, stop_servers
    from shared.messaging.consumer import _connection_of

    url = await asyncio.to_thread(ensure_nats, tmp_path)  # a server of our own, to kill
    routes = [Route("PipelineRequested", analyze, step="analyze")]
    with caplog.at_level(logging.WARNING, logger="repo_pilot.bus"):
        quiet = ServiceRuntime("quiet", routes, store, Deps(), nats_url=url, **bus_names)
        await quiet.start()
        broker = quiet.broker
        assert _connection_of(broker).is_connected
        await quiet.stop()
        assert _connection_of(broker) is None
        assert "connection lost" not in caplog.text

        lost = ServiceRuntime("lost", routes, store, Deps(), nats_url=url, **bus_names)
        lost.stop_grace = 1.0
        await lost.start()
        try:
            await asyncio.to_thread(stop_servers, tmp_path)
            await eventually(lambda: _true("lost: NATS connection lost" in caplog.text), what="the log line")
        finally:
            await lost.stop()
    assert "quiet: NATS connection lost" not in caplog.text
