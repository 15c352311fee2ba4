"""Relay throughput: a log of N stored events republished onto an empty JetStream stream by our
`Relay`, against raw nats-py `publish_async` of the same payloads and headers (Nats-Msg-Id) to a
stream of its own on the same server, all PubAcks awaited. Both end when the stream holds N."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg

from shared.messaging.bus import connect_nats, ensure_stream
from shared.messaging.relay import Relay, publish_headers
from shared.store import PostgresEventStore
from benchmarks.store_bench import run_events

POLL = 0.05


async def _stored_log(store: PostgresEventStore, n: int) -> None:
    for events in run_events(n):
        await store.append(events[0].stream_id, events, expected_version=0)


async def _wait_messages(js, stream: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (await js.stream_info(stream)).state.messages < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream {stream} did not reach {n} messages in {timeout:.0f} s")
        await asyncio.sleep(POLL)


async def ours(nats_url: str, store: PostgresEventStore, tag: str, n: int) -> float:
    stream, prefix = f"BENCH_RELAY_{tag.upper()}", f"benchrelay{tag}"
    nc = await connect_nats(nats_url, "bench-relay")
    js = nc.jetstream()
    await ensure_stream(js, stream, prefix)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(Relay(store, nc, stream_name=stream, subject_prefix=prefix).run(stop))
    try:
        await _wait_messages(js, stream, n, timeout=max(120, n / 200))
        return n / (time.perf_counter() - started)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await nc.close()


async def raw(nats_url: str, store: PostgresEventStore, tag: str, n: int) -> float:
    stream, prefix = f"BENCH_RAWPUB_{tag.upper()}", f"benchrawpub{tag}"
    nc = await connect_nats(nats_url, "bench-raw-publish")
    js = nc.jetstream()
    await ensure_stream(js, stream, prefix)
    try:
        position = 0  # read the log in pages, as the relay does, and publish without waiting per message
        started = time.perf_counter()
        while page := await store.read_all(position, 1000):
            for event in page:
                await js.publish_async(event.subject(prefix), event.to_json().encode(), stream=stream,
                                       headers=publish_headers(event))
            position = page[-1].global_position
        await js.publish_async_completed()
        await _wait_messages(js, stream, n, timeout=max(120, n / 200))
        return n / (time.perf_counter() - started)
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await nc.close()


async def relay_benchmark(nats_url: str, database_url: str, tag: str, n: int) -> tuple[float, float]:
    """(ours, raw) events per second over a log of `n` events."""
    schema = f"bench_relay_{tag}"
    store = await PostgresEventStore.connect(database_url, schema=schema)
    try:
        await _stored_log(store, n)
        raw_rate = await raw(nats_url, store, tag, n)
        ours_rate = await ours(nats_url, store, tag, n)
        return ours_rate, raw_rate
    finally:
        await store.close()
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
