"""Latency from append to a consumer's handler, against raw JetStream publish -> receive + one insert.

Ours: `store.append` -> NOTIFY -> relay -> JetStream (PubAck) -> durable pull consumer
(ServiceRuntime: tracking check, StepStarted append) -> handler entry.
Baseline: nats-py `js.publish` (PubAck) -> push subscription callback -> one INSERT committed.
Events go one at a time, GAP seconds apart after the previous arrived, so each number is one full
trip through an idle system (latency under light load; throughput is measured elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time

import asyncpg

from shared.events import Envelope, PipelineRequested, make_event
from shared.events.envelope import new_run_stream
from shared.messaging.bus import connect_nats, ensure_stream
from shared.messaging.consumer import Route, ServiceRuntime
from shared.messaging.relay import Relay
from shared.store import PostgresEventStore

GAP = 0.03  # lets the consumer finish its bookkeeping (StepCompleted, ack) before the next event


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(samples), "p99": percentile(samples, 0.99)}


async def ours(nats_url: str, database_url: str, tag: str, n: int, warmup: int) -> list[float]:
    store = await PostgresEventStore.connect(database_url, schema=f"bench_lat_{tag}")
    stream_name, prefix = f"BENCH_LAT_{tag.upper()}", f"benchlat{tag}"
    nc = await connect_nats(nats_url, "bench-relay")
    await ensure_stream(nc.jetstream(), stream_name, prefix)
    arrived: dict = {}
    waiter: asyncio.Event = asyncio.Event()

    async def handler(event: Envelope, deps) -> list[Envelope]:
        arrived[event.event_id] = time.perf_counter()
        waiter.set()
        return []

    stop = asyncio.Event()
    relay = Relay(store, nc, stream_name=stream_name, subject_prefix=prefix)
    relay_task = asyncio.create_task(relay.run(stop))
    runtime = ServiceRuntime(
        "bench", [Route("PipelineRequested", handler, step="bench")], store, None,
        nats_url=nats_url, stream_name=stream_name, subject_prefix=prefix,
    )
    await runtime.start()
    samples: list[float] = []
    try:
        for i in range(warmup + n):
            event = make_event(PipelineRequested(repo="/srv/repo"), new_run_stream())
            waiter.clear()
            started = time.perf_counter()
            await store.append(event.stream_id, [event])
            while event.event_id not in arrived:
                await asyncio.wait_for(waiter.wait(), 30)
                waiter.clear()
            if i >= warmup:
                samples.append(arrived[event.event_id] - started)
            await asyncio.sleep(GAP)
        return samples
    finally:
        await runtime.stop()
        stop.set()
        await asyncio.wait_for(relay_task, 15)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream_name)
        await nc.close()
        await store.close()
        await _drop_schema(database_url, f"bench_lat_{tag}")


async def raw(nats_url: str, database_url: str, tag: str, n: int, warmup: int) -> list[float]:
    schema, stream_name, subject = f"bench_raw_{tag}", f"BENCH_RAW_{tag.upper()}", f"benchraw{tag}.run.x"
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    await pool.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await pool.execute(f'CREATE TABLE "{schema}".received (id text PRIMARY KEY, body bytea NOT NULL)')
    nc = await connect_nats(nats_url, "bench-raw")
    js = nc.jetstream()
    await ensure_stream(js, stream_name, f"benchraw{tag}")
    arrived: dict[str, float] = {}
    waiter = asyncio.Event()

    async def on_message(msg) -> None:
        msg_id = msg.headers["Nats-Msg-Id"]
        await pool.execute(f'INSERT INTO "{schema}".received (id, body) VALUES ($1, $2)', msg_id, msg.data)
        await msg.ack()
        arrived[msg_id] = time.perf_counter()
        waiter.set()

    sub = await js.subscribe(subject, stream=stream_name, cb=on_message, manual_ack=True)
    samples: list[float] = []
    try:
        for i in range(warmup + n):
            event = make_event(PipelineRequested(repo="/srv/repo"), new_run_stream())
            msg_id = str(event.event_id)
            waiter.clear()
            started = time.perf_counter()
            await js.publish(subject, event.to_json().encode(), stream=stream_name, headers={"Nats-Msg-Id": msg_id})
            while msg_id not in arrived:
                await asyncio.wait_for(waiter.wait(), 30)
                waiter.clear()
            if i >= warmup:
                samples.append(arrived[msg_id] - started)
            await asyncio.sleep(GAP)
        return samples
    finally:
        await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_stream(stream_name)
        await nc.close()
        await pool.close()
        await _drop_schema(database_url, schema)


async def _drop_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
