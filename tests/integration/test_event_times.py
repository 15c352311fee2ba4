"""Event times that never go backwards (issue 22): the store records when each event was
appended on its own clock, in position order, and `repo-pilot events` shows that clock rather
than the `occurred_at` each writing process stamps with its own. Real Postgres, real CLI."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest

from shared.events import PipelineRequested, StepStarted, make_event, new_run_stream
from tests.integration.test_cli import cli

pytestmark = pytest.mark.integration


async def _recorded(store, stream_id: str) -> list[tuple[int, object]]:
    rows = await store.pool.fetch(
        "SELECT global_position, recorded_at FROM events WHERE stream_id = $1 ORDER BY global_position", stream_id)
    return [(r["global_position"], r["recorded_at"]) for r in rows]


async def test_recorded_times_rise_with_the_position_when_a_writer_waits_for_the_lock(store):
    """A writer whose transaction began first but appended second gets the later position; its
    recorded time must be later too (it was the transaction's start, `now()`, before)."""
    early, late = new_run_stream(), new_run_stream()
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1")  # the transaction has begun (and with it `now()`)
        await asyncio.sleep(0.05)  # so the other writer's clock reads later, whatever the resolution
        await store.append(late, [make_event(PipelineRequested(repo="/b"), late)], 0)  # commits first
        await store.append_in(conn, early, [make_event(PipelineRequested(repo="/a"), early)], 0)
    (first, first_at), = await _recorded(store, late)
    (second, second_at), = await _recorded(store, early)
    assert first < second
    assert first_at <= second_at


async def test_events_shows_the_store_clock_not_each_writers(store, cli_env):
    run_id = new_run_stream()
    requested = make_event(PipelineRequested(repo="/a"), run_id)
    # A second process whose clock is three hours behind stamps the next event.
    skewed = make_event(StepStarted(step="analyze"), run_id)
    skewed = skewed.model_copy(update={"occurred_at": requested.occurred_at - timedelta(hours=3)})
    await store.append(run_id, [requested], 0)
    await store.append(run_id, [skewed], 1)

    out = (await asyncio.to_thread(cli, cli_env, "events", run_id)).stdout
    shown = re.findall(r"^\s*(\d+) (\d\d:\d\d:\d\d) ", out, re.MULTILINE)
    recorded = await _recorded(store, run_id)
    assert [(int(p), t) for p, t in shown] == [(p, f"{at:%H:%M:%S}") for p, at in recorded]
    assert f"{skewed.occurred_at:%H:%M:%S}" not in [t for _, t in shown]
