"""Projections: live folding equals a rebuild from position 0."""

from __future__ import annotations

import pytest

from shared.events import (
    ChangeApplied,
    ChangeRejected,
    Improvement,
    ImprovementsSuggested,
    PipelineFailed,
    PipelineRequested,
    RepoAnalyzed,
    StepCompleted,
    StepFailed,
    StepStarted,
    new_run_stream,
)
from shared.store.projections import Projector, get_run, list_runs
from tests.support.read_models import append as _append
from tests.support.read_models import snapshot as _snapshot

pytestmark = pytest.mark.integration


async def test_live_projection_then_rebuild_gives_identical_rows(store):
    projector = Projector(store, batch=3)  # small batches: state must carry across them
    ok, bad = new_run_stream(), new_run_stream()
    await _append(store, ok, PipelineRequested(repo="/a", engine="rules"), StepStarted(step="analyze"))
    await projector.run_once()
    await _append(
        store, ok,
        RepoAnalyzed(base_sha="abc", default_branch="main", repo_path="/a", specification="s", graph="g",
                     architecture="a"),
        StepCompleted(step="analyze", summary="done"),
        ImprovementsSuggested(improvements=[
            Improvement(id="security-1", category="security", title="fix", rationale="r"),
            Improvement(id="compliance-1", category="compliance", title="license", rationale="r"),
        ]),
        ChangeApplied(improvement_id="security-1", patch="p", files=["a.py"], commit_sha="c1"),
        ChangeRejected(improvement_id="compliance-1", reason="no automatic fix"),
    )
    await _append(store, bad, PipelineRequested(repo="/b"), StepStarted(step="analyze"),
                  StepFailed(step="analyze", error="not a git repository"),
                  PipelineFailed(step="analyze", error="not a git repository"))
    await projector.run_once()
    live = await _snapshot(store)

    run, beads = await get_run(store, ok)
    assert run["status"] == "RUNNING" and run["base_sha"] == "abc"
    by_id = {b["bead_id"]: b for b in beads}
    assert by_id["analyze"]["status"] == "COMPLETED" and by_id["analyze"]["duration_ms"] >= 0
    assert by_id["analyze"]["title"] == "analyze (rules engine)"
    assert by_id["improvement:security-1"]["status"] == "COMPLETED"
    assert by_id["improvement:compliance-1"]["status"] == "SKIPPED"
    assert by_id["improvement:compliance-1"]["error"] == "no automatic fix"
    assert by_id["suggest"]["status"] == "PENDING"

    failed, fbeads = await get_run(store, bad)
    assert failed["status"] == "FAILED" and "not a git repository" in failed["error"]
    statuses = {b["bead_id"]: b["status"] for b in fbeads}
    assert statuses["analyze"] == "FAILED" and statuses["merge"] == "SKIPPED"

    assert await projector.rebuild() == await store.last_position()
    assert await _snapshot(store) == live
    assert {r["run_id"] for r in await list_runs(store)} == {ok, bad}


async def test_projector_is_idempotent_per_batch(store):
    stream = new_run_stream()
    await _append(store, stream, PipelineRequested(repo="/a"), StepStarted(step="analyze"))
    projector = Projector(store)
    events = await store.read_all(0)
    await projector.apply(events)
    await projector.apply(events)  # a second projector applying the same batch changes nothing
    run, beads = await get_run(store, stream)
    assert run["last_position"] == events[-1].global_position
    assert [b["status"] for b in beads if b["bead_id"] == "analyze"] == ["RUNNING"]
