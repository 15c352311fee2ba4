"""An event that decodes but cannot be projected is quarantined and stepped past (issue 17's
leftover): the projector keeps projecting, `repo-pilot health` shows the event, and a rebuild
gives the same tables. Real Postgres; the event is one any writer could append."""

from __future__ import annotations

import base64
import random

import pytest

from shared.events import PipelineRequested, StepCompleted, StepStarted, new_run_stream
from shared.store.projections import Projector, get_run
from tests.support.read_models import append as _append
from tests.support.read_models import snapshot as _snapshot

pytestmark = pytest.mark.integration


def _unindexable_step() -> str:
    """A step name that becomes a bead id no btree entry can hold (over 2,704 bytes even after
    Postgres compresses it): the fold takes it, the bead's row cannot be written."""
    return base64.b64encode(random.Random(17).randbytes(6000)).decode()


async def test_an_event_the_projector_cannot_write_is_quarantined_and_projection_goes_on(store):
    from shared.app.health import collect

    poisoned, later = new_run_stream(), new_run_stream()
    await _append(store, poisoned, PipelineRequested(repo="/a"), StepStarted(step="analyze"))
    await _append(store, poisoned, StepStarted(step=_unindexable_step()))
    bad_position = await store.last_position()
    await _append(store, poisoned, StepCompleted(step="analyze", summary="done"))
    await _append(store, later, PipelineRequested(repo="/b"), StepStarted(step="analyze"))

    projector = Projector(store)
    assert await projector.run_once() == 5  # the old projector raised here, and on every retry

    run, beads = await get_run(store, poisoned)
    assert {b["bead_id"]: b["status"] for b in beads}["analyze"] == "COMPLETED"  # the event after it
    assert run["last_position"] > bad_position
    assert (await get_run(store, later))[0]["status"] == "RUNNING"
    assert await store.get_checkpoint("projector") == await store.last_position()
    faults = await store.relay_faults()
    assert [(f["global_position"], f["kind"], f["relay"]) for f in faults] == [
        (bad_position, "unprojectable", "projector")]
    assert faults[0]["reason"].startswith("write: ProgramLimitExceededError")

    health = await collect(store, nats_url=None, stream_name="unused", services=[], stall_after=3600)
    assert not health.ok and "1 event(s) quarantined" in dict((n, d) for n, _, d in health.checks)["relay faults"]

    live = await _snapshot(store)
    assert await projector.rebuild() == 5
    assert await _snapshot(store) == live


async def test_an_event_whose_fold_raises_is_quarantined_and_projection_goes_on(store):
    """The shape of the unpriced-job bug (a cost of None where the fold adds numbers), as a
    payload built the way an older build or a bad upcaster could hand it over: the fold raises,
    the event is recorded and stepped past, the events after it are projected."""
    from shared.events.run import LlmCallRecorded

    run_id = new_run_stream()
    await _append(store, run_id, PipelineRequested(repo="/a"),
                  LlmCallRecorded(purpose="analyze", model="m", prompt_hash="h", cost_usd=0.5),
                  StepStarted(step="analyze"))
    requested, call, started = await store.read_stream(run_id)
    unpriced = type(call).model_construct(**{
        **dict(call), "data": LlmCallRecorded.model_construct(**{**dict(call.data), "cost_usd": None})})

    projector = Projector(store)
    assert await projector.apply([requested, unpriced, started]) == 2  # the old projector raised TypeError

    run, beads = await get_run(store, run_id)
    assert run["cost_usd"] == 0 and run["last_position"] == started.global_position
    assert {b["bead_id"]: b["status"] for b in beads}["analyze"] == "RUNNING"
    fault, = await store.relay_faults()
    assert (fault["global_position"], fault["kind"]) == (call.global_position, "unprojectable")
    assert fault["reason"].startswith("fold: TypeError")
