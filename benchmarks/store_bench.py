"""Event store throughput: ours (asyncpg) against the `eventsourcing` library's PostgreSQL recorder.

Both sides store the same pre-built events (a pipeline run's worth of step events per stream),
on the same database, each in its own schema, one writer at a time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import asyncpg

from shared.events import STEPS, Envelope, PipelineRequested, StepCompleted, StepStarted, make_event
from shared.events.envelope import new_run_stream
from shared.store import PostgresEventStore
from shared.store.fold import fold
from shared.store.projections import Projector


@dataclass
class Measure:
    name: str
    ours: float  # events per second (higher is better)
    baseline: float
    aim: float | None = None  # ours / baseline must reach this
    note: str = ""


def run_events(n: int) -> list[list[Envelope]]:
    """Streams shaped like pipeline runs (requested, then started/completed per step), n events."""
    streams: list[list[Envelope]] = []
    total = 0
    while total < n:
        stream_id = new_run_stream()
        events = [make_event(PipelineRequested(repo="/srv/repo"), stream_id)]
        i = 0
        while len(events) < 100 and total + len(events) < n:
            step = STEPS[(i // 2) % len(STEPS)]
            payload = StepStarted(step=step, attempt=1) if i % 2 == 0 else StepCompleted(step=step, summary="ok")
            events.append(make_event(payload, stream_id, service="bench"))
            i += 1
        streams.append(events)
        total += len(events)
    return streams


def _stored(events: list[Envelope]):
    from eventsourcing.persistence import StoredEvent

    originator = uuid.uuid4()
    return [
        StoredEvent(originator_id=originator, originator_version=v, topic=e.type, state=e.to_json().encode())
        for v, e in enumerate(events, start=1)
    ]


class EventsourcingSide:
    """`eventsourcing.postgres`: PostgresDatastore + PostgresApplicationRecorder in its own schema."""

    def __init__(self, params: dict, schema: str):
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        self.datastore = PostgresDatastore(**params, schema=schema, pool_size=2)
        self.recorder = PostgresApplicationRecorder(self.datastore, events_table_name="bench_events")
        self.recorder.create_table()

    def append_one_per_tx(self, streams: list[list[Envelope]]) -> tuple[int, float]:
        prepared = [_stored(s) for s in streams]
        started = time.perf_counter()
        for stored in prepared:
            for event in stored:
                self.recorder.insert_events([event])
        return sum(len(s) for s in prepared), time.perf_counter() - started

    def append_batches(self, streams: list[list[Envelope]]) -> tuple[int, float]:
        prepared = [_stored(s) for s in streams]
        started = time.perf_counter()
        for stored in prepared:
            self.recorder.insert_events(stored)
        return sum(len(s) for s in prepared), time.perf_counter() - started

    def read_all(self, batch: int) -> tuple[int, float]:
        started = time.perf_counter()
        count, start = 0, 1
        while True:
            page = self.recorder.select_notifications(start, batch)
            if not page:
                break
            # The same work as ours: typed events out of the rows, not just bytes.
            _ = [Envelope.from_json(n.state) for n in page]
            count += len(page)
            start = page[-1].id + 1
        return count, time.perf_counter() - started

    def rebuild(self, batch: int) -> tuple[int, float]:
        """The same pure fold as our projector, over notifications, into dicts (no table writes)."""
        started = time.perf_counter()
        runs: dict[str, dict] = {}
        beads: dict[str, dict] = {}
        count, start = 0, 1
        while True:
            page = self.recorder.select_notifications(start, batch)
            if not page:
                break
            for n in page:
                event = Envelope.from_json(n.state)
                folded = fold(runs.get(event.stream_id), beads.setdefault(event.stream_id, {}), event)
                if folded is not None:
                    runs[event.stream_id] = folded
            count += len(page)
            start = page[-1].id + 1
        return count, time.perf_counter() - started

    def close(self) -> None:
        self.datastore.close()


async def ours_append_one_per_tx(store: PostgresEventStore, streams: list[list[Envelope]]) -> tuple[int, float]:
    started = time.perf_counter()
    for events in streams:
        for event in events:
            await store.append(event.stream_id, [event])
    return sum(len(s) for s in streams), time.perf_counter() - started


async def ours_append_batches(store: PostgresEventStore, streams: list[list[Envelope]]) -> tuple[int, float]:
    started = time.perf_counter()
    for events in streams:
        await store.append(events[0].stream_id, events, expected_version=0)
    return sum(len(s) for s in streams), time.perf_counter() - started


async def interleaved(ours, baseline, streams: list[list[Envelope]], rounds: int) -> tuple[float, float]:
    """Rates (events/s) of both sides, taking turns over `rounds` slices so load drift hits both."""
    totals = {"ours": [0, 0.0], "baseline": [0, 0.0]}
    for r in range(rounds):
        chunk = streams[r::rounds]
        order = [("ours", ours), ("baseline", baseline)]
        for side, fn in order if r % 2 == 0 else reversed(order):
            result = fn(chunk)
            count, seconds = await result if asyncio.iscoroutine(result) else result
            totals[side][0] += count
            totals[side][1] += seconds
    return totals["ours"][0] / totals["ours"][1], totals["baseline"][0] / totals["baseline"][1]


async def ours_read_all(store: PostgresEventStore, batch: int) -> tuple[int, float]:
    started = time.perf_counter()
    count, position = 0, 0
    while events := await store.read_all(position, batch):
        count += len(events)
        position = events[-1].global_position
    return count, time.perf_counter() - started


async def ours_rebuild(store: PostgresEventStore) -> tuple[int, float]:
    started = time.perf_counter()
    count = await Projector(store).rebuild()
    return count, time.perf_counter() - started


async def run_store_benchmarks(database_url: str, params: dict, tag: str, one_per_tx: int, batched: int) -> list[Measure]:
    ours_schema, es_schema = f"bench_{tag}", f"bench_es_{tag}"
    store = await PostgresEventStore.connect(database_url, schema=ours_schema)
    await store.pool.execute(f'CREATE SCHEMA IF NOT EXISTS "{es_schema}"')
    es = EventsourcingSide(params, es_schema)
    try:
        single = run_events(one_per_tx)
        batches = run_events(batched)  # streams of 100 events: one append per stream
        measures = [
            Measure(
                "append, 1 event/tx (events/s)",
                *await interleaved(lambda c: ours_append_one_per_tx(store, c), es.append_one_per_tx, single, 6),
                aim=2.0,
            ),
            Measure(
                "append, 100 events/tx (events/s)",
                *await interleaved(lambda c: ours_append_batches(store, c), es.append_batches, batches, 6),
                aim=2.0,
            ),
        ]
        log_size = await store.last_position()
        every = [[]] * 3  # whole-log passes ignore the slice: three turns each
        measures.append(Measure(
            f"read whole log, {log_size} events, pages of 1000 (events/s)",
            *await interleaved(lambda _: ours_read_all(store, 1000), lambda _: es.read_all(1000), every, 3),
            note="both sides parse every row into an Envelope",
        ))
        measures.append(Measure(
            "projection rebuild (events/s)",
            *await interleaved(lambda _: ours_rebuild(store), lambda _: es.rebuild(500), every, 3),
            aim=2.0,
            note="ours: Projector.rebuild() truncates and writes runs/beads + checkpoint; "
            "baseline: select_notifications + the same pure fold into dicts, no writes",
        ))
        return measures
    finally:
        es.close()
        await store.close()
        conn = await asyncpg.connect(database_url)
        try:
            for schema in (ours_schema, es_schema):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
