"""The event store contract, against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.events import Envelope, PipelineRequested, StepStarted, make_event, new_run_stream
from shared.store import AlreadyProcessed, ConcurrencyError, PostgresEventStore, migrate

pytestmark = pytest.mark.integration


def started(stream: str, step: str = "analyze") -> Envelope:
    return make_event(StepStarted(step=step), stream)


async def test_append_assigns_versions_and_positions(store):
    stream = new_run_stream()
    stored = await store.append(stream, [make_event(PipelineRequested(repo="/r"), stream), started(stream)], 0)
    assert [e.version for e in stored] == [1, 2]
    assert stored[0].global_position < stored[1].global_position
    back = await store.read_stream(stream)
    assert [e.event_id for e in back] == [e.event_id for e in stored]
    assert isinstance(back[0].data, PipelineRequested) and back[0].data.repo == "/r"
    assert await store.stream_version(stream) == 2


async def test_expected_version_conflict(store):
    stream = new_run_stream()
    await store.append(stream, [started(stream)], 0)
    with pytest.raises(ConcurrencyError) as err:
        await store.append(stream, [started(stream)], 0)
    assert err.value.actual == 1
    await store.append(stream, [started(stream)], 1)
    # None appends at the end whatever the version
    await store.append(stream, [started(stream)])
    assert await store.stream_version(stream) == 3


async def test_concurrent_writers_with_same_expected_version_one_wins(store):
    stream = new_run_stream()
    results = await asyncio.gather(
        *(store.append(stream, [started(stream)], 0) for _ in range(5)), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, ConcurrencyError) for r in results if isinstance(r, Exception))


async def test_tracking_row_makes_handling_exactly_once(store):
    stream = new_run_stream()
    cause = (await store.append(stream, [started(stream)]))[0]
    await store.append(stream, [started(stream, "x")], tracking=("svc", cause.event_id))
    with pytest.raises(AlreadyProcessed):
        await store.append(stream, [started(stream, "y")], tracking=("svc", cause.event_id))
    assert [e.data.step for e in await store.read_stream(stream)] == ["analyze", "x"]
    assert await store.is_processed("svc", cause.event_id)
    assert not await store.is_processed("other", cause.event_id)


async def test_read_all_in_batches(store):
    streams = [new_run_stream() for _ in range(3)]
    for s in streams:
        await store.append(s, [started(s, str(i)) for i in range(4)])
    seen, position = [], 0
    while batch := await store.read_all(position, limit=5):
        assert len(batch) <= 5
        seen.extend(batch)
        position = batch[-1].global_position
    assert len(seen) == 12
    assert [e.global_position for e in seen] == sorted(e.global_position for e in seen)


async def test_migrations_are_safe_twice_and_concurrently(database_url, db_schema):
    conns = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(migrate(c, db_schema) for c in conns))
        assert sorted(len(a) for a in applied)[-1] > 0
        assert sum(len(a) for a in applied) == len(max(applied, key=len))  # each applied once
        assert await migrate(conns[0], db_schema) == []
    finally:
        for c in conns:
            await c.execute(f'DROP SCHEMA IF EXISTS "{db_schema}" CASCADE')
            await c.close()


async def test_concurrent_writers_tailing_reader_sees_every_event_once_in_order(store):
    """The sequence-gap problem: late commits must not be skipped by a tailing reader."""
    writers, per_writer = 6, 25
    expected_total = writers * per_writer
    seen: list[Envelope] = []

    async def read():
        async for event in store.tail(0, batch=7, poll_interval=0.2):
            seen.append(event)
            if len(seen) >= expected_total:
                return

    async def write(w: int):
        stream = new_run_stream()
        for i in range(per_writer):
            # hold some transactions open a moment so commits interleave
            async with store.pool.acquire() as conn, conn.transaction():
                await store.append_in(conn, stream, [started(stream, f"{w}-{i}")])
                if i % 3 == 0:
                    await asyncio.sleep(0.003)

    reader = asyncio.create_task(read())
    await asyncio.gather(*(write(w) for w in range(writers)))
    await asyncio.wait_for(reader, 30)
    positions = [e.global_position for e in seen]
    assert len(seen) == expected_total
    assert len(set(e.event_id for e in seen)) == expected_total
    assert positions == sorted(positions)
    assert positions == list(range(positions[0], positions[0] + expected_total))  # no gaps either


async def test_tail_takes_this_process_commits_at_once_and_the_others_in_order(store, database_url, db_schema):
    """A tail gets what its own process commits handed over (the very objects `append` returned,
    no page read), and what another process commits in between still follows in log order, even
    when the NOTIFY for it is cleared by a hand-off: nothing waits for the (here 60 s) poll."""
    other = await PostgresEventStore.connect(database_url, schema=db_schema)  # another process
    seen: list[Envelope] = []

    async def read():
        async for event in store.tail(await store.last_position(), poll_interval=60):
            seen.append(event)

    async def until_seen(n: int) -> None:
        while len(seen) < n:
            await asyncio.sleep(0.001)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.2)  # listening
    ours, theirs, written = [], [], []
    try:
        for i in range(20):  # ours alone, each read before the next
            stream = new_run_stream()
            ours += await store.append(stream, [started(stream, f"ours-{i}")])
            written.append(ours[-1])
            await asyncio.wait_for(until_seen(len(written)), 20)
        for i in range(20):  # interleaved with another process's commits
            stream = new_run_stream()
            theirs += await other.append(stream, [started(stream, f"theirs-{i}")])
            ours += await store.append(stream, [started(stream, f"ours-{i}")])
            written += [theirs[-1], ours[-1]]
        await asyncio.wait_for(until_seen(len(written)), 20)
    finally:
        reader.cancel()
        await other.close()
    positions = [e.global_position for e in seen]
    assert positions == list(range(positions[0], positions[0] + len(written)))
    assert [e.event_id for e in seen] == [e.event_id for e in written]
    handed = {id(e) for e in ours}
    # most of the first 20 come straight from `append` (a NOTIFY read first reads the log instead)
    assert sum(id(e) in handed for e in seen[:20]) > 0
    assert not any(id(e) in handed for e in seen if e.data.step.startswith("theirs"))

async def test_commits_are_kept_for_a_tail_only_while_one_has_not_passed_them(store):
    """Events may be large: a process with no tail here (a CLI, a standby relay) keeps none of
    what it commits, and a tail's own position lets go of what it has passed."""
    stream = new_run_stream()
    await store.append(stream, [started(stream, f"s{i}") for i in range(5)])
    assert store._committed == {}  # no tail in this process
    seen: list[Envelope] = []

    async def read():
        async for event in store.tail(await store.last_position(), poll_interval=60):
            seen.append(event)

    reader = asyncio.create_task(read())
    try:
        await asyncio.sleep(0.2)
        for i in range(5):
            await store.append(stream, [started(stream, f"t{i}")])
            while len(seen) < i + 1:
                await asyncio.sleep(0.001)
        [last] = await store.append(stream, [started(stream, "last")])  # prunes what the tail passed
        # t0-t4 are gone; `last` is kept unless the tail already read it (after its NOTIFY)
        assert set(store._committed) <= {last.global_position}
    finally:
        reader.cancel()
