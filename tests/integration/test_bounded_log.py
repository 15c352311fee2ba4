"""Nothing stalls the log: bounded events, quarantined rows, readers that skip, a relay that
recovers a wiped stream, a sweeper that ends stalled runs, supervised tasks (issue 13).
Real Postgres and real NATS JetStream throughout."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from shared.events import PipelineRequested, make_event, new_run_stream
from shared.events.run import StepStarted
from shared.messaging.sweeper import Sweeper
from shared.store import EventTooLarge
from shared.store.projections import Projector, get_run, list_runs
from tests.support.bus_harness import eventually, requested, running_relay, stream_events

pytestmark = pytest.mark.integration


async def _insert_raw(store, stream_id: str, type_name: str, data: dict, version: int = 1) -> int:
    """A row written behind the store's back (an old build, a manual fix): what readers must survive."""
    return await store.pool.fetchval(
        "INSERT INTO events (stream_id, version, event_id, type, data, metadata, occurred_at, correlation_id) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, '{}'::jsonb, now(), $1) RETURNING global_position",
        stream_id, version, uuid.uuid4(), type_name, json.dumps(data))


async def test_store_refuses_an_oversized_event_naming_its_field_and_writes_nothing(store):
    store.max_event_bytes = 50_000
    stream = new_run_stream()
    big = make_event(PipelineRequested(repo="/tmp/" + "x" * 60_000), stream)
    with pytest.raises(EventTooLarge) as caught:
        await store.append(stream, [requested(stream), big])
    assert caught.value.field == "data.repo" and caught.value.size > 50_000
    assert "'data.repo'" in str(caught.value) and "REPO_PILOT_MAX_EVENT_BYTES" in str(caught.value)
    assert await store.read_stream(stream) == []  # the whole append was refused
    stored = await store.append(stream, [requested(stream)])  # a normal event still goes in
    assert stored[0].version == 1


async def test_readers_and_projections_skip_unknown_and_malformed_rows(store):
    good = await _one(store)
    bad_stream = new_run_stream()
    unknown = await _insert_raw(store, bad_stream, "NoSuchEvent", {"x": 1})
    malformed = await _insert_raw(store, good[0].stream_id, "StepStarted", {"step": 5, "attempt": "x"}, 2)
    after = await _one(store)

    events = await store.read_all(0)
    assert [e.event_id for e in events] == [good[0].event_id, after[0].event_id]
    assert set(store.skipped) == {unknown, malformed}
    assert "unknown event type 'NoSuchEvent'" in store.skipped[unknown].reason
    assert "field 'step'" in store.skipped[malformed].reason
    assert len(await store.read_stream(good[0].stream_id)) == 1

    assert await Projector(store).run_once() == 2
    assert {r["run_id"] for r in await list_runs(store)} == {good[0].stream_id, after[0].stream_id}
    assert await Projector(store).rebuild() == 2
    # The projector moves past bad rows at the end of the log too.
    tail = await _insert_raw(store, new_run_stream(), "NoSuchEvent", {})
    await Projector(store).run_once()
    assert tail in store.skipped
    assert await store.get_checkpoint("projector") == tail


async def test_relay_quarantines_undecodable_and_too_large_events_and_keeps_publishing(
        store, nats_client, bus_names):
    store.max_event_bytes = 5_000_000  # let a too-large event in, as an old build could have
    js = nats_client.jetstream()
    first = await _one(store)
    unknown = await _insert_raw(store, new_run_stream(), "NoSuchEvent", {})
    huge = await _one(store, repo="/" + "y" * 1_200_000)
    last = await _one(store)
    async with running_relay(store, nats_client, bus_names) as relay:
        await eventually(lambda: _published(js, bus_names, 2), what="the good events published")
        await eventually(lambda: _count_faults(store, 2), what="two relay faults")
        assert relay.quarantined == 2
    received = await stream_events(js, bus_names["stream_name"])
    assert [e.event_id for e in received] == [first[0].event_id, last[0].event_id]
    faults = {f["global_position"]: f for f in await store.relay_faults()}
    assert faults[unknown]["kind"] == "undecodable" and "NoSuchEvent" in faults[unknown]["reason"]
    assert faults[huge[0].global_position]["kind"] == "too_large"
    assert faults[huge[0].global_position]["event_id"] == huge[0].event_id
    assert await store.get_checkpoint("relay") == last[0].global_position


async def test_relay_republishes_what_a_wiped_stream_lost(store, nats_client, bus_names):
    js = nats_client.jetstream()
    stored = [e for _ in range(3) for e in await _one(store)]
    async with running_relay(store, nats_client, bus_names):
        await eventually(lambda: _published(js, bus_names, 3), what="first publish")
    await js.delete_stream(bus_names["stream_name"])
    stored += await _one(store)
    async with running_relay(store, nats_client, bus_names):
        await eventually(lambda: _published(js, bus_names, 4), what="republished after deletion")
    received = await stream_events(js, bus_names["stream_name"])
    assert [e.event_id for e in received] == [e.event_id for e in stored]


async def test_sweeper_ends_a_stalled_run_and_leaves_a_moving_one(store):
    stalled = new_run_stream()
    await store.append(stalled, [make_event(PipelineRequested(repo="/tmp/r"), stalled)], 0)
    await store.append(stalled, [make_event(StepStarted(step="analyze"), stalled)])
    moving = new_run_stream()
    await store.append(moving, [make_event(PipelineRequested(repo="/tmp/r"), moving)], 0)
    await store.pool.execute(
        "UPDATE events SET recorded_at = now() - interval '2 hours' WHERE stream_id = $1", stalled)
    await Projector(store).run_once()

    sweeper = Sweeper(store, stall_after=3600)
    assert await sweeper.sweep() == 1
    assert await sweeper.sweep() == 0  # ended runs are not swept again
    await Projector(store).run_once()
    run, beads = await get_run(store, stalled)
    assert run["status"] == "FAILED" and "no progress for" in run["error"] and "'analyze'" in run["error"]
    assert {b["bead_id"]: b["status"] for b in beads}["analyze"] == "FAILED"
    assert (await get_run(store, moving))[0]["status"] == "RUNNING"


async def test_sweeper_loses_the_race_to_progress(store):
    run_id = new_run_stream()
    await store.append(run_id, [make_event(PipelineRequested(repo="/tmp/r"), run_id)], 0)
    await store.pool.execute("UPDATE events SET recorded_at = now() - interval '2 hours'")
    await Projector(store).run_once()
    sweeper = Sweeper(store, stall_after=3600)
    found = await sweeper.find_stalled()
    assert [s.run_id for s in found] == [run_id]
    await store.append(run_id, [make_event(StepStarted(step="analyze"), run_id)])  # progress lands
    sweeper.find_stalled = _returning(found)
    assert await sweeper.sweep() == 0
    assert [e.type for e in await store.read_stream(run_id)] == ["PipelineRequested", "StepStarted"]


async def test_health_reports_the_runs_the_sweeper_would_end_and_no_others(store):
    """One rule for "stalled" (shared.store.queries): a run whose end is logged but not yet
    projected is not stalled for health either (health used to ask only the read model)."""
    from shared.app.health import collect
    from shared.events.run import PipelineCompleted

    stalled, ended = new_run_stream(), new_run_stream()
    for run_id in (stalled, ended):
        await store.append(run_id, [make_event(PipelineRequested(repo=f"/tmp/{run_id}"), run_id)], 0)
        await store.append(run_id, [make_event(StepStarted(step="analyze"), run_id)])
    await Projector(store).run_once()
    await store.append(ended, [make_event(PipelineCompleted(verdict="not_merged"), ended)])  # logged, not projected
    await store.pool.execute("UPDATE events SET recorded_at = now() - interval '2 hours'")

    swept = [s.run_id for s in await Sweeper(store, stall_after=3600).find_stalled()]
    health = await collect(store, nats_url=None, stream_name="unused", services=[], stall_after=3600)
    runs = next(detail for name, ok, detail in health.checks if name == "runs")
    assert swept == [stalled]
    assert stalled in runs and "at analyze" in runs and ended not in runs


async def test_supervised_task_restarts_after_errors_and_reports_why():
    from shared.app.runtime import supervise

    stop, state, calls = asyncio.Event(), {}, []

    async def flaky(stop_event):
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"database gone #{len(calls)}")
        await stop_event.wait()

    task = asyncio.create_task(supervise("projector", flaky, stop, state, backoff=(0.05,)))
    await eventually(lambda: _true(len(calls) == 1 and state.get("projector", "").startswith("restarting")),
                     what="a failed state")
    assert "ConnectionError: database gone #1" in state["projector"]
    await eventually(lambda: _true(len(calls) == 3 and state["projector"] == ""), what="running again")
    stop.set()
    await asyncio.wait_for(task, 5)


async def _one(store, **kwargs) -> list:
    stream = new_run_stream()
    return await store.append(stream, [requested(stream, **kwargs)])


async def _true(value: bool) -> bool:
    return value


def _returning(value):
    async def found(*_a, **_k):
        return value
    return found


async def _published(js, bus_names, n: int) -> bool:
    try:
        return (await js.stream_info(bus_names["stream_name"])).state.messages == n
    except Exception:
        return False


async def _count_faults(store, n: int) -> bool:
    return len(await store.relay_faults()) == n
