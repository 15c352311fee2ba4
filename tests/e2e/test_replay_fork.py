"""Replaying and forking recorded runs over real NATS, Postgres and git, with the real openai client
speaking HTTP to the scripted model server: a fork re-runs only the steps from where it forks, a
replay with `reuse_llm` asks the model nothing, and neither merges what the target already has."""

from __future__ import annotations

import subprocess

import pytest

from shared.app.bootstrap import real_engine_factory
from shared.app.replay import ReplayRefused, plan_fork, replay
from shared.app.runtime import PIPELINE_SERVICES, System
from shared.engines.llm_client import RetryPolicy
from tests.support.llm_script import CATEGORIES, make_calc_repo, script_happy_path
from tests.support.pipeline import wait_for_run

pytestmark = pytest.mark.e2e

FAST = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.02)


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


async def _replayed(system, run_id, step, **kw):
    new_run, _ = await replay(system.store, run_id, step, service="test", **kw)
    run, beads = await wait_for_run(system.store, new_run)
    return run, beads, await system.store.read_stream(new_run)


def _ran_anew(events) -> list[str]:
    """Steps started in this run itself (not copied from the original)."""
    return [e.data.step for e in events if e.type == "StepStarted" and "replayed_event" not in e.metadata]


async def test_a_fork_reruns_only_its_steps_asks_no_model_and_merges_nothing_already_merged(
        llm_settings, server, tmp_path):
    repo = make_calc_repo(tmp_path / "calc")
    script_happy_path(server)
    engines = real_engine_factory(llm_settings, retry=FAST, timeout=10)
    async with System(llm_settings, services=list(PIPELINE_SERVICES), deps_overrides={"make_engine": engines}) as system:
        from shared.app.requests import append_request
        from shared.events import PipelineRequested

        first_id = await append_request(system.store, PipelineRequested(repo=str(repo), engine="llm", categories=list(CATEGORIES)), service="test")
        first, _ = await wait_for_run(system.store, first_id)
        assert first["status"] == "COMPLETED" and first["merged"] is True, first["error"]
        original = await system.store.read_stream(first_id)
        merged_main = _git(repo, "rev-parse", "main")
        asked = len(server.requests)
        server.clear()  # from now on any model request is answered HTTP 400

        run, beads, events = await _replayed(system, first_id, "review", reuse_llm=True)

        assert len(server.requests) == asked  # zero model calls: copied steps and the unchanged review
        assert run["status"] == "COMPLETED", run["error"]
        assert _ran_anew(events) == ["review", "merge", "docs"]  # analyze … test were copied
        status = {b["bead_id"]: b["status"] for b in beads if b["kind"] == "step"}
        assert status == {"analyze": "COMPLETED", "suggest": "COMPLETED", "execute": "COMPLETED",
                          "test": "COMPLETED", "review": "COMPLETED", "merge": "COMPLETED", "docs": "SKIPPED"}
        assert run["merged"] is False and "already merged: main already has every change" in run["error"]
        assert f"a replay of {first_id}" in run["error"]
        assert _git(repo, "rev-parse", "main") == merged_main
        review = next(e for e in events if e.type == "ChangesReviewed")
        assert review.data == next(e for e in original if e.type == "ChangesReviewed").data

        # Every copy points at its original: causation, metadata, and the original's trace context
        # (the consumer's span links to it instead of continuing it).
        by_id = {e.event_id: e for e in original}
        copies = [e for e in events if "replayed_event" in e.metadata]
        assert [c.type for c in copies] == [o.type for o in original[:len(copies)]]
        for copy in copies:
            source = by_id[copy.causation_id]
            assert str(source.event_id) == copy.metadata["replayed_event"]
            assert copy.metadata["replayed_from"] == first_id and copy.data == source.data
            assert copy.traceparent == source.traceparent
        assert all(e.stream_id == run["run_id"] for e in events)

        # The whole run again (plain replay) finds its changes merged too, and merges nothing.
        again, _, again_events = await _replayed(system, first_id, None, reuse_llm=True)
        assert len(server.requests) == asked
        assert again["status"] == "COMPLETED", again["error"]
        assert again["merged"] is False and "already merged" in again["error"]
        assert _git(repo, "rev-parse", "main") == merged_main
        assert again_events[0].metadata["replayed_from"] == first_id
        assert _ran_anew(again_events)[:2] == ["analyze", "suggest"]

        with pytest.raises(ReplayRefused, match="unknown step 'deploy'"):
            plan_fork(original, "run-x", "deploy", reuse_llm=False)
        failed_early = original[:3]
        with pytest.raises(ReplayRefused, match="never reached 'review'"):
            plan_fork(failed_early, "run-x", "review", reuse_llm=False)
