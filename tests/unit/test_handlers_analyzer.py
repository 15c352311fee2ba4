"""The analyzer's handlers against in-memory fakes of their ports: no servers."""

from __future__ import annotations

import pytest

from services.analyzer.handlers import on_merge_completed, on_pipeline_requested, on_run_ended
from shared.events import MergeCompleted, PipelineRequested, new_run_stream
from shared.policy.docs import DOC_FILES
from shared.ports.engine import Analysis
from shared.ports.errors import StepError
from tests.support.fakes import FakeEngine, FakeForge, fake_deps, given

pytestmark = pytest.mark.unit

REPO = {"app.py": "def main():\n    return 1\n"}


def types(events) -> list[str]:
    return [e.type for e in events]


async def test_requested_run_is_analyzed_at_the_resolved_base_and_the_copy_removed(tmp_path):
    deps = fake_deps(tmp_path, {"demo": REPO})
    run = new_run_stream()
    [request] = await given(deps.store, run, PipelineRequested(repo="demo"))

    out = await on_pipeline_requested(request, deps)

    assert types(out) == ["LlmCallRecorded", "RepoAnalyzed"]
    analyzed = out[-1].data
    base = (await deps.workspace.materialize("demo")).base_sha
    assert (analyzed.base_sha, analyzed.default_branch, analyzed.repo_path) == (base, "main", "demo")
    assert (analyzed.specification, analyzed.engine) == ("spec", "rules")
    assert all(e.causation_id == request.event_id and e.stream_id == run for e in out)
    assert deps.workspace.made == [f"{run}-analyze"] and not deps.workspace.live


async def test_a_failing_engine_leaves_no_copy_and_its_calls_in_the_log(tmp_path):
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=FakeEngine(fail="analyze"))
    run = new_run_stream()
    [request] = await given(deps.store, run, PipelineRequested(repo="demo"))

    with pytest.raises(StepError, match="fails at analyze") as caught:
        await on_pipeline_requested(request, deps)

    assert not deps.workspace.live
    # The calls go with the error; the consumer records them with StepFailed, in one transaction.
    assert [c.purpose for c in caught.value.records] == ["analyze"]
    assert types(await deps.store.read_stream(run)) == ["PipelineRequested"]


async def test_a_missing_repository_is_a_step_error(tmp_path):
    deps = fake_deps(tmp_path, {})
    [request] = await given(deps.store, new_run_stream(), PipelineRequested(repo="nowhere"))
    with pytest.raises(StepError, match="does not exist"):
        await on_pipeline_requested(request, deps)


async def test_not_merged_skips_the_docs_and_closes_the_run_with_its_log(tmp_path):
    deps = fake_deps(tmp_path, {"demo": REPO})
    run = new_run_stream()
    events = await given(deps.store, run, PipelineRequested(repo="demo"))
    analyzed = (await on_pipeline_requested(events[0], deps))[-1]
    await deps.store.append(run, [analyzed])
    [merge] = await given(deps.store, run, MergeCompleted(pushed=True, branch="b", merged=False, reason="low score"))

    out = await on_merge_completed(merge, deps)

    assert types(out) == ["StepSkipped", "PipelineCompleted"]
    done = out[-1].data
    assert (done.verdict, done.summary) == ("not_merged", "low score")
    # The log is written once the run's last event is stored (on_run_ended), so it holds them all.
    await deps.store.append(run, out)
    assert await on_run_ended(out[-1], deps) == []
    assert done.run_log == str(deps.run_log.path(run))
    assert types(deps.run_log.logs[run]) == [
        "PipelineRequested", "RepoAnalyzed", "MergeCompleted", "StepSkipped", "PipelineCompleted"]
    assert not deps.workspace.live


async def analyzed_and_merged(deps):
    """A run analyzed by the handler, then merged: (RepoAnalyzed, MergeCompleted) as stored."""
    run = new_run_stream()
    events = await given(deps.store, run, PipelineRequested(repo="demo"))
    analyzed = (await on_pipeline_requested(events[0], deps))[-1]
    await deps.store.append(run, [analyzed])
    [merge] = await given(deps.store, run, MergeCompleted(pushed=True, branch="b", merged=True))
    return analyzed, merge


async def test_merged_run_gets_its_docs_committed_and_merged_through_the_forge(tmp_path):
    forge = FakeForge()
    deps = fake_deps(tmp_path, {"demo": REPO}, forge=forge)
    analyzed, merge = await analyzed_and_merged(deps)

    out = await on_merge_completed(merge, deps)

    assert types(out) == ["LlmCallRecorded", "DocsUpdated", "PipelineCompleted"]
    docs = out[1].data
    assert docs.files == sorted(DOC_FILES.values())
    [branch] = forge.published
    assert branch.endswith("-docs") and forge.merges == [branch]
    assert docs.commit_sha == forge.requests[branch].merge_sha
    assert out[-1].data.verdict == "merged"
    assert not deps.workspace.live
    # The docs went to the forge's branch, not the origin: the default branch is where it was.
    repo = await deps.workspace.materialize("demo")
    path = await deps.workspace.worktree("check", "demo", repo.base_sha)
    assert not (path / "docs").exists() and repo.base_sha == analyzed.data.base_sha


async def test_a_project_with_its_own_docs_gets_none_added_beside_them(tmp_path):
    forge = FakeForge()
    sphinx = Analysis(specification="spec", graph="graph", architecture="arch",
                      stats={"own_docs": "Sphinx (docs/conf.py)"})
    deps = fake_deps(tmp_path, {"demo": {**REPO, "docs/conf.py": "project = 'demo'\n"}}, forge=forge,
                     engine=FakeEngine(analysis=sphinx))
    _, merge = await analyzed_and_merged(deps)

    out = await on_merge_completed(merge, deps)

    assert types(out) == ["StepSkipped", "PipelineCompleted"]
    assert out[0].data.step == "docs" and "keeps its own docs (Sphinx (docs/conf.py))" in out[0].data.reason
    assert out[-1].data.verdict == "merged" and not forge.published and not deps.workspace.live
