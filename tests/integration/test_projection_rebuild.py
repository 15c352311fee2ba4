"""The projector's fast path: the in-memory rebuild gives the same rows as live projection."""

from __future__ import annotations

import json

import pytest

from shared.events import (
    FeatureGenerated,
    FeatureGenerationRequested,
    LlmCallRecorded,
    PipelineFailed,
    PipelineRequested,
    StepCompleted,
    StepStarted,
    new_gen_stream,
    new_run_stream,
)
from shared.store.projections import Projector
from tests.support.read_models import append as _append
from tests.support.read_models import snapshot as _snapshot

pytestmark = pytest.mark.integration


async def _mixed_log(store) -> None:
    """Interleaved run and generation streams, plus a stream whose start is missing."""
    ok, bad, gen, orphan = new_run_stream(), new_run_stream(), new_gen_stream(), new_run_stream()
    await _append(store, ok, PipelineRequested(repo="/a", engine="rules"), StepStarted(step="analyze"))
    await _append(store, gen, FeatureGenerationRequested(task_dir="/t", output_dir="/o"))
    await _append(store, orphan, StepStarted(step="analyze"))
    await _append(store, ok, StepCompleted(step="analyze", summary="done", metadata={"files": 3}),
                  LlmCallRecorded(purpose="p", model="m", prompt_hash="h", prompt_tokens=5, cost_usd=0.1))
    await _append(store, bad, PipelineRequested(repo="/b"), StepStarted(step="analyze"),
                  PipelineFailed(step="analyze", error="boom"))
    await _append(store, gen, FeatureGenerated(feature_patch="f", tests_patch="t", feature_md="m",
                                                cost_usd=0.2))
    await _append(store, ok, StepStarted(step="suggest", attempt=2), StepStarted(step="suggest", attempt=3))


async def test_rebuild_in_memory_equals_live_projection_across_pages(store):
    live = Projector(store, batch=2)
    await _mixed_log(store)
    await live.run_once()
    await _append(store, new_run_stream(), PipelineRequested(repo="/c"))
    await live.run_once()
    projected = await _snapshot(store)

    # A row no event explains (left by older code, say): a rebuild starts from empty tables.
    await store.pool.execute(
        "INSERT INTO runs (run_id, kind, status, last_position) VALUES ('run-stray', 'run', 'RUNNING', 0)"
    )
    rebuilt = Projector(store, batch=3)  # pages that cut streams in the middle
    assert await rebuilt.rebuild() == await store.last_position()
    assert await _snapshot(store) == projected
    assert await store.get_checkpoint("projector") == await store.last_position()

    # Live projection carries on from the rebuilt rows and checkpoint.
    stream = (await store.read_all(0, 1))[0].stream_id
    await _append(store, stream, StepCompleted(step="suggest", summary="two ideas"))
    assert await live.run_once() == 1
    after_live = await _snapshot(store)
    await rebuilt.rebuild()
    assert await _snapshot(store) == after_live


async def test_rebuild_skips_a_row_that_no_longer_validates_and_reports_it(store):
    await _mixed_log(store)
    await Projector(store).run_once()
    before = await _snapshot(store)
    stream = new_run_stream()
    # A row that no longer validates (written around the store, as a damaged log would be).
    await store.pool.execute(
        "INSERT INTO events (stream_id, version, event_id, type, data, metadata, occurred_at) "
        "VALUES ($1, 1, gen_random_uuid(), 'StepStarted', $2::jsonb, '{}'::jsonb, now())",
        stream, json.dumps({"step": 42}),
    )
    # Issue 13: one bad row must not stop a rebuild; it is skipped and reported, never folded.
    await Projector(store, batch=4).rebuild()
    assert await _snapshot(store) == before
    [bad] = [r for r in store.skipped.values() if r.stream_id == stream]
    assert "malformed StepStarted" in bad.reason and "field 'step'" in bad.reason
