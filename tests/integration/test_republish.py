"""`repo-pilot relay --from-position N` against real NATS JetStream and Postgres: after the stream is
deleted, every event of the log is back on the bus once, and a service skips what it handled."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import nats
import nats.js.errors
import pytest

from shared.app.eventlog import append_history
from shared.app.runtime import System
from shared.events import (
    MergeCompleted,
    PipelineCompleted,
    PipelineRequested,
    StepCompleted,
    StepStarted,
    make_event,
    new_run_stream,
)
from shared.store import PostgresEventStore

pytestmark = pytest.mark.integration


def cli(env, *args):
    proc = subprocess.run([sys.executable, "-m", "shared.app.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stderr.split())


async def _handled_runs(store, count: int) -> int:
    """`count` finished runs whose events every service already handled (tracking rows)."""
    for _ in range(count):
        run = new_run_stream()
        events = [make_event(PipelineRequested(repo="/srv/repo"), run)]
        for payload in (StepStarted(step="analyze"), StepCompleted(step="analyze"),
                        MergeCompleted(pushed=False, branch="b", merged=False, reason="test"),
                        PipelineCompleted(verdict="not_merged")):
            events.append(make_event(payload, run, cause=events[-1]))
        async with store.pool.acquire() as conn, conn.transaction():
            await append_history(store, conn, [e.stored(v, 0) for v, e in enumerate(events, 1)])
    return await store.last_position()


async def _stream_ids(js, stream: str) -> list[str]:
    info = await js.stream_info(stream)
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        ids.append(msg.headers["Nats-Msg-Id"])
    return ids


def test_republishing_a_wiped_stream_brings_every_event_back_once(cli_env, settings):
    stream = cli_env["REPO_PILOT_STREAM"]

    async def seed():
        store = await PostgresEventStore.connect(cli_env["DATABASE_URL"], schema=cli_env["REPO_PILOT_DB_SCHEMA"])
        try:
            return await _handled_runs(store, 3), [str(e.event_id) for e in await store.read_all(0, 100)]
        finally:
            await store.close()

    total, event_ids = asyncio.run(seed())
    assert total == 15

    async def wipe():
        nc = await nats.connect(cli_env["NATS_URL"])
        try:
            try:
                await nc.jetstream().delete_stream(stream)
            except nats.js.errors.NotFoundError:
                pass
        finally:
            await nc.close()

    asyncio.run(wipe())
    said = cli(cli_env, "relay", "--from-position", "0")
    assert "republished 15 event(s) from position 0" in said and "15 were new" in said
    assert "events/s" in said and "position 15/15" in said
    again = cli(cli_env, "relay", "--from-position", "11")
    assert "republished 5 event(s) from position 11" in again and "0 were new" in again

    async def consume():
        nc = await nats.connect(cli_env["NATS_URL"])
        js = nc.jetstream()
        try:
            assert sorted(await _stream_ids(js, stream)) == sorted(event_ids)  # each event once
            async with System(settings, services=["analyzer"], relay=False, projector=False,
                              sweeper=False) as system:
                while True:  # until the analyzer's durable consumer has seen and acked everything
                    info = await js.consumer_info(stream, "analyzer")
                    if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq >= 15:
                        break
                    await asyncio.sleep(0.2)
                return await system.store.last_position(), info.delivered.consumer_seq
        finally:
            await nc.close()

    position, delivered = asyncio.run(consume())
    assert delivered >= 3 + 3 + 3  # at least the requests, merges and completions it routes
    assert position == total  # handled before: skipped, nothing appended
