"""The EventStore port: one contract suite, run against every implementation (the in-memory
fake the handler unit tests use, and Postgres), as pyeventsourcing runs one recorder suite per
backend. A fake that passes it behaves like the store where handlers can tell."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.events import LlmCallRecorded, StepStarted, make_event, new_run_stream
from shared.ports.store import EventStore
from shared.store import AlreadyProcessed, ConcurrencyError
from tests.conftest import scratch_store
from tests.support.fakes import InMemoryEventStore


@pytest.fixture(params=[pytest.param("memory", marks=pytest.mark.unit),
                        pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request, unique):
    if request.param == "memory":
        yield InMemoryEventStore()
        return
    async with scratch_store(request.getfixturevalue("database_url"), f"c_{unique}") as s:
        yield s


def events(stream: str, n: int, first: int = 1) -> list:
    return [make_event(StepStarted(step=f"s{i}"), stream) for i in range(first, first + n)]


async def test_implements_the_port(store):
    assert isinstance(store, EventStore)


async def test_append_numbers_versions_and_positions_and_reads_back(store):
    a, b = new_run_stream(), new_run_stream()
    stored_a = await store.append(a, events(a, 3), 0)
    stored_b = await store.append(b, events(b, 2), 0)
    assert [e.version for e in stored_a] == [1, 2, 3] and [e.version for e in stored_b] == [1, 2]
    positions = [e.global_position for e in stored_a + stored_b]
    assert positions == sorted(positions) and len(set(positions)) == 5
    read = await store.read_stream(a)
    assert [(e.event_id, e.data) for e in read] == [(e.event_id, e.data) for e in stored_a]
    assert [e.version for e in await store.read_stream(a, from_version=2)] == [2, 3]
    assert await store.stream_version(a) == 3 and await store.stream_version(new_run_stream()) == 0
    assert await store.read_stream(new_run_stream()) == []


async def test_a_wrong_expected_version_raises_and_appends_nothing(store):
    s = new_run_stream()
    await store.append(s, events(s, 2), 0)
    with pytest.raises(ConcurrencyError) as info:
        await store.append(s, events(s, 1, 3), 1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    with pytest.raises(ConcurrencyError):
        await store.append(s, events(s, 1, 3), 0)  # 0: the stream must not exist
    assert await store.stream_version(s) == 2
    assert [e.version for e in await store.append(s, events(s, 1, 3), 2)] == [3]
    assert [e.version for e in await store.append(s, events(s, 1, 4))] == [4]  # None: at the end


async def test_concurrent_writers_with_the_same_expectation_one_wins(store):
    s = new_run_stream()
    await store.append(s, events(s, 1), 0)
    results = await asyncio.gather(*(store.append(s, events(s, 1, 2), 1) for _ in range(5)),
                                   return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, ConcurrencyError) for r in results if isinstance(r, Exception))
    assert await store.stream_version(s) == 2


async def test_tracking_row_makes_a_second_handling_a_no_op(store):
    s, cause = new_run_stream(), uuid.uuid4()
    assert not await store.is_processed("svc", cause)
    await store.append(s, events(s, 1), tracking=("svc", cause))
    assert await store.is_processed("svc", cause) and not await store.is_processed("other", cause)
    with pytest.raises(AlreadyProcessed):
        await store.append(s, events(s, 1, 2), tracking=("svc", cause))
    assert await store.stream_version(s) == 1


async def test_append_streams_is_all_or_nothing_with_its_tracking_row(store):
    run, gen, cause = new_run_stream(), new_run_stream(), uuid.uuid4()
    stored = await store.append_streams([(run, events(run, 2)), (gen, events(gen, 1))], tracking=("svc", cause))
    assert [(e.stream_id, e.version) for e in stored] == [(run, 1), (run, 2), (gen, 1)]
    with pytest.raises(AlreadyProcessed):
        await store.append_streams([(run, events(run, 1, 3)), (gen, events(gen, 1, 2))],
                                   tracking=("svc", cause))
    assert (await store.stream_version(run), await store.stream_version(gen)) == (2, 1)
    only_row = uuid.uuid4()
    assert await store.append_streams([(run, [])], tracking=("svc", only_row)) == []
    assert await store.is_processed("svc", only_row) and await store.stream_version(run) == 2


async def test_read_all_pages_the_whole_log_in_order(store):
    start = await store.last_position()
    streams = [new_run_stream() for _ in range(3)]
    for s in streams:
        await store.append(s, events(s, 4))
    seen, position = [], start
    while page := await store.read_all(position, limit=5):
        assert len(page) <= 5
        seen += page
        position = page[-1].global_position
    assert len(seen) == 12 and [e.global_position for e in seen] == sorted(e.global_position for e in seen)
    assert await store.last_position() == seen[-1].global_position


async def test_payloads_and_metadata_survive_the_round_trip(store):
    s = new_run_stream()
    call = LlmCallRecorded(purpose="review", model="m", prompt_hash="h", prompt_tokens=3, response="{\"a\": 1}")
    first = make_event(StepStarted(step="x"), s)
    second = make_event(call, s, cause=first, service="svc", metadata={"replayed_from": "run-old"})
    await store.append(s, [first, second])
    [_, back] = await store.read_stream(s)
    assert back.data == call and back.causation_id == first.event_id
    assert back.metadata["service"] == "svc" and back.metadata["replayed_from"] == "run-old"
    assert back.correlation_id == first.correlation_id


async def test_get_event_returns_the_stored_copy_or_none(store):
    a = new_run_stream()
    [first, second] = await store.append(a, events(a, 2), 0)
    got = await store.get_event(second.event_id)
    assert (got.event_id, got.type, got.stream_id, got.version) == (second.event_id, "StepStarted", a, 2)
    assert await store.get_event(uuid.uuid4()) is None


async def test_get_event_for_says_whether_the_consumer_handled_it(store):
    a, cause = new_run_stream(), uuid.uuid4()
    [first] = await store.append(a, events(a, 1), 0)
    got, handled = await store.get_event_for("svc", first.event_id)
    assert (got.event_id, got.version, handled) == (first.event_id, 1, False)
    await store.append(a, events(a, 1, 2), tracking=("svc", first.event_id))
    assert (await store.get_event_for("svc", first.event_id))[1] is True
    assert (await store.get_event_for("other", first.event_id))[1] is False
    # a tracking row whose event the store does not hold: none, but handled
    await store.append(a, events(a, 1, 3), tracking=("svc", cause))
    assert await store.get_event_for("svc", cause) == (None, True)
