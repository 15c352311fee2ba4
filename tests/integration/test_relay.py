"""The outbox relay against real Postgres and real NATS JetStream."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from nats.js.errors import NotFoundError

from shared.messaging.bus import ensure_stream, subjects_for
from shared.messaging.relay import Relay, publish_headers
from tests.support.bus_harness import (
    TRACEPARENT,
    eventually,
    requested,
    running_relay,
    stream_events,
    stream_messages,
)

pytestmark = pytest.mark.integration


async def _append_interleaved(store, streams: int, per_stream: int) -> list:
    """Events spread over several streams, interleaved, so global order differs from stream order."""
    ids = [requested().stream_id for _ in range(streams)]
    stored = []
    for _ in range(per_stream):
        for stream_id in ids:
            stored += await store.append(stream_id, [requested(stream_id)])
    return stored


async def _stream_count(js, name: str) -> int:
    try:
        return (await js.stream_info(name)).state.messages
    except NotFoundError:
        return -1


async def test_publishes_every_event_in_global_order_with_ids_and_traceparent(store, nats_client, bus_names):
    js = nats_client.jetstream()
    stored = await _append_interleaved(store, streams=3, per_stream=4)
    async with running_relay(store, nats_client, bus_names):
        more = await _append_interleaved(store, streams=2, per_stream=3)  # arrive while tailing
        stored += more
        await eventually(lambda: _stream_count_is(js, bus_names["stream_name"], len(stored)), what="all events")
    messages = await stream_messages(js, bus_names["stream_name"])
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [str(e.event_id) for e in stored]
    assert all(m.headers["traceparent"] == TRACEPARENT for m in messages)
    assert [m.subject for m in messages] == [e.subject(bus_names["subject_prefix"]) for e in stored]
    received = await stream_events(js, bus_names["stream_name"])
    assert [e.global_position for e in received] == [e.global_position for e in stored]
    assert await store.get_checkpoint("relay") == stored[-1].global_position


async def test_a_window_smaller_than_the_log_keeps_global_order_and_checkpoints_only_acked_events(
        store, nats_client, bus_names):
    """Publishes are pipelined (several PubAcks outstanding); the stream still holds the log in
    global order, once each, and the checkpoint reaches the last event only once it is acked."""
    js = nats_client.jetstream()
    stored = await _append_interleaved(store, streams=5, per_stream=9)
    async with running_relay(store, nats_client, bus_names, window=4, checkpoint_interval=0.01) as relay:
        await eventually(lambda: _stream_count_is(js, bus_names["stream_name"], len(stored)), what="all events")
        await eventually(lambda: _checkpoint_is(store, stored[-1].global_position), what="checkpoint at the end")
        assert relay.published == len(stored)
    received = await stream_events(js, bus_names["stream_name"])
    assert [e.event_id for e in received] == [e.event_id for e in stored]


async def _checkpoint_is(store, position: int) -> bool:
    return await store.get_checkpoint("relay") == position


async def _stream_count_is(js, name: str, n: int) -> bool:
    return await _stream_count(js, name) == n


async def test_same_event_published_twice_is_stored_once(store, nats_client, bus_names):
    js = nats_client.jetstream()
    await ensure_stream(js, **bus_names)
    [event] = await store.append(requested().stream_id, [requested()])
    first = await js.publish(
        event.subject(bus_names["subject_prefix"]), event.to_json().encode(),
        stream=bus_names["stream_name"], headers=publish_headers(event),
    )
    # The relay starts from checkpoint 0 and so publishes the same event again.
    async with running_relay(store, nats_client, bus_names) as relay:
        await eventually(lambda: _checkpoint_is(store, event.global_position), what="relay checkpoint")
        assert relay.published == 0  # the stream answered "duplicate"
    assert not first.duplicate
    messages = await stream_messages(js, bus_names["stream_name"])
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [str(event.event_id)]


async def _checkpoint_is(store, position: int) -> bool:
    return await store.get_checkpoint("relay") == position


async def test_standby_takes_over_when_the_leaders_connection_dies(store, nats_client, bus_names, database_url):
    js = nats_client.jetstream()
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    # a retries slowly once it has lost the lock, so b (the standby) is the one to take over.
    a = Relay(store, nats_client, **bus_names, lock_retry=3.0)
    b = Relay(store, nats_client, **bus_names, lock_retry=0.1)
    task_a = asyncio.create_task(a.run(stop_a))
    await eventually(lambda: _true(a.is_leader), what="a leads")
    task_b = asyncio.create_task(b.run(stop_b))
    first = await _append_interleaved(store, streams=2, per_stream=5)
    await eventually(lambda: _stream_count_is(js, bus_names["stream_name"], len(first)), what="first batch")
    assert a.is_leader and not b.is_leader

    # Keep appending while the leader's lock connection is killed by the server.
    writer = asyncio.create_task(_append_interleaved(store, streams=2, per_stream=15))
    killer = await asyncpg.connect(database_url)
    try:
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", a.lock_backend_pid)
    finally:
        await killer.close()
    second = await writer
    await eventually(lambda: _true(b.is_leader), what="b takes over")
    assert not a.is_leader  # a is alive again, as a standby
    more = await _append_interleaved(store, streams=1, per_stream=5)
    stored = first + second + more
    await eventually(lambda: _stream_count_is(js, bus_names["stream_name"], len(stored)), what="all events")
    await eventually(lambda: _checkpoint_is(store, stored[-1].global_position), what="checkpoint")
    stop_a.set()
    stop_b.set()
    await asyncio.wait_for(asyncio.gather(task_a, task_b), 15)
    received = await stream_events(js, bus_names["stream_name"])
    assert [e.event_id for e in received] == [e.event_id for e in stored]  # none lost, none twice


async def test_standby_takes_over_when_the_leader_stops(store, nats_client, bus_names):
    js = nats_client.jetstream()
    stored = await _append_interleaved(store, streams=1, per_stream=3)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    a = Relay(store, nats_client, **bus_names, lock_retry=0.1)
    b = Relay(store, nats_client, **bus_names, lock_retry=0.1)
    task_a = asyncio.create_task(a.run(stop_a))
    await eventually(lambda: _true(a.is_leader), what="a leads")
    task_b = asyncio.create_task(b.run(stop_b))
    await eventually(lambda: _stream_count_is(js, bus_names["stream_name"], 3), what="first events")
    stop_a.set()
    await asyncio.wait_for(task_a, 15)
    stored += await _append_interleaved(store, streams=2, per_stream=2)
    try:
        await eventually(lambda: _true(b.is_leader), what="b leads")
        await eventually(lambda: _stream_count_is(js, bus_names["stream_name"], len(stored)), what="the rest")
    finally:
        stop_b.set()
        await asyncio.wait_for(task_b, 15)
    received = await stream_events(js, bus_names["stream_name"])
    assert [e.event_id for e in received] == [e.event_id for e in stored]


async def _true(value: bool) -> bool:
    return value


async def test_wiped_stream_is_rebuilt_from_position_zero(store, nats_client, bus_names):
    js = nats_client.jetstream()
    stored = await _append_interleaved(store, streams=3, per_stream=3)
    async with running_relay(store, nats_client, bus_names):
        await eventually(lambda: _stream_count_is(js, bus_names["stream_name"], len(stored)), what="published")
    await js.delete_stream(bus_names["stream_name"])

    stop = asyncio.Event()
    relay = Relay(store, nats_client, **bus_names)
    task = asyncio.create_task(relay.republish_all(stop))
    try:
        await eventually(lambda: _stream_count_is(js, bus_names["stream_name"], len(stored)), what="rebuilt")
        await eventually(lambda: _checkpoint_is(store, stored[-1].global_position), what="checkpoint")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    received = await stream_events(js, bus_names["stream_name"])
    assert [e.event_id for e in received] == [e.event_id for e in stored]


async def test_stream_config_is_brought_up_to_date(nats_client, bus_names):
    js = nats_client.jetstream()
    await js.add_stream(name=bus_names["stream_name"], subjects=[f"{bus_names['subject_prefix']}.run.>"])
    info = await ensure_stream(js, **bus_names)
    assert info.config.subjects == [f"{bus_names['subject_prefix']}.>"]
    assert info.config.duplicate_window == 120
    assert subjects_for(["StepFailed", "PipelineRequested"], "p") == ["p.*.step_failed", "p.run.pipeline_requested"]


async def test_lost_nats_connection_is_logged_and_retried_forever(tmp_path, caplog):
    import logging

    from shared.app.embedded import ensure_nats, stop_servers
    from shared.messaging.bus import connect_nats

    url = await asyncio.to_thread(ensure_nats, tmp_path)  # a server of our own, to kill
    nc = await connect_nats(url, "probe")
    try:
        with caplog.at_level(logging.WARNING, logger="repo_pilot.bus"):
            await asyncio.to_thread(stop_servers, tmp_path)
            await eventually(lambda: _true("reconnecting forever" in caplog.text), what="the log line")
            await asyncio.sleep(1.5)  # a few reconnect attempts later it has not given up
            assert not nc.is_closed
    finally:
        await nc.close()
    assert "probe: NATS connection lost, reconnecting forever…" in caplog.text
    assert nc.options["max_reconnect_attempts"] == -1
