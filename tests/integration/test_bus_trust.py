"""The bus only carries; the store decides (issue 12). Over real NATS JetStream and Postgres: an
event published straight to NATS, or one whose stream or causation differ from the stored copy,
is refused and nothing is written; a traversal stream id never parses."""

from __future__ import annotations

import asyncio
import json

import pytest

from shared.events import Envelope, MalformedEvent, make_event
from shared.messaging.consumer import Route, ServiceRuntime
from tests.support.bus_harness import eventually, requested, running_relay

pytestmark = pytest.mark.integration


class Calls(list):
    pass


async def handle(event: Envelope, calls: Calls) -> list[Envelope]:
    calls.append(event)
    return []


@pytest.fixture
async def runtime(store, nats_url, bus_names):
    calls = Calls()
    rt = ServiceRuntime("analyzer", [Route("PipelineRequested", handle, step="analyze")], store, calls,
                        nats_url=nats_url, **bus_names, max_deliver=2)
    await rt.start()
    yield calls
    await rt.stop()


async def publish_raw(nats_client, bus_names, subject_type: str, body: bytes) -> None:
    subject = f"{bus_names['subject_prefix']}.run.{subject_type}"
    await nats_client.jetstream().publish(subject, body, stream=bus_names["stream_name"])


async def test_forged_and_mismatched_events_are_refused(store, nats_client, bus_names, runtime, caplog):
    calls = runtime
    forged = requested(repo="/etc")  # never appended: exists only on the bus
    real = requested()
    [stored_real] = await store.append(real.stream_id, [real])
    # the stored event's id, but claimed for another stream and with a made-up cause
    other_stream = requested().stream_id
    moved = json.loads(stored_real.to_json()) | {"stream_id": other_stream}
    caused = json.loads(stored_real.to_json()) | {"causation_id": str(forged.event_id)}
    with caplog.at_level("ERROR", logger="repo_pilot.consumer"):
        for body in (forged.to_json(), json.dumps(moved), json.dumps(caused)):
            await publish_raw(nats_client, bus_names, "pipeline_requested", body.encode())
        async with running_relay(store, nats_client, bus_names):  # now the real one, through the relay
            await eventually(lambda: asyncio.sleep(0, bool(calls)), what="the stored event handled")
            await asyncio.sleep(1.0)  # time for any late delivery of the forged messages
    assert [c.event_id for c in calls] == [stored_real.event_id]
    assert calls[0].stream_id == real.stream_id and calls[0].data.repo == "/tmp/repo"
    assert await store.read_stream(forged.stream_id) == []
    assert await store.read_stream(other_stream) == []
    assert caplog.text.count("refusing PipelineRequested") == 3, caplog.text


async def test_a_traversal_stream_id_is_refused_at_the_envelope(store, nats_client, bus_names, runtime, caplog):
    calls = runtime
    good = json.loads(requested().to_json())
    for bad in ("run-/../../escape/pwned", "run-../x", "run-a/b", "gen-.", "run-", "other-123", "run-a b"):
        with pytest.raises(MalformedEvent, match="stream id"):
            Envelope.from_dict(good | {"stream_id": bad})
        with pytest.raises(ValueError, match="stream id"):
            make_event(requested().data, bad)
    with caplog.at_level("ERROR", logger="repo_pilot.consumer"):
        await publish_raw(nats_client, bus_names, "pipeline_requested",
                          json.dumps(good | {"stream_id": "run-/../../escape/pwned"}).encode())
        await eventually(lambda: asyncio.sleep(0, "invalid message" in caplog.text), what="the message dropped")
    assert calls == []
    assert await store.last_position() == 0
