"""analyzer: materialize and document the repository; after the merge, refresh the docs and close the run."""

from __future__ import annotations

import logging
from typing import Protocol

from shared.common.fs import UnsafePath, write_inside
from shared.events import DocsUpdated, Envelope, PipelineCompleted, RepoAnalyzed, StepSkipped
from shared.events.limits import clip
from shared.policy.docs import DOC_FILES, docs_skipped_reason
from shared.policy.run import RunContext, emit, load_context, previous_calls
from shared.ports.deps import UsesChanges, UsesEngine, UsesForge, UsesRunLog, UsesStore, UsesWorkspace

SERVICE = "analyzer"
log = logging.getLogger("repo_pilot.analyzer")


class Uses(UsesStore, UsesWorkspace, UsesChanges, UsesEngine, UsesForge, UsesRunLog, Protocol):
    """What the analyzer's handlers use: the store (run context), the workspace and changes (docs
    commit), the engine (docs), the forge (docs merge) and the run log."""


async def on_pipeline_requested(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    req = event.data
    repo = await deps.workspace.materialize(req.repo, req.ref)
    work_id = f"{ctx.run_id}-analyze"
    try:
        path = await deps.workspace.worktree(work_id, req.repo, repo.base_sha)
        engine = deps.engine(ctx, await previous_calls(deps.store, ctx))
        analysis = await engine.analyze(path)
    finally:
        await deps.workspace.remove(work_id)
    return emit(event, SERVICE, *engine.drain_calls(), RepoAnalyzed(
        base_sha=repo.base_sha, default_branch=repo.default_branch, repo_path=req.repo,
        stats=analysis.stats, specification=clip(analysis.specification, what="specification.md"),
        graph=clip(analysis.graph, what="graph.md"),
        architecture=clip(analysis.architecture, what="architecture.md"), engine=engine.name,
    ))


async def on_merge_completed(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    merge = event.data
    own = ctx.analyzed.stats.get("own_docs")
    if not merge.merged:
        out = [StepSkipped(step="docs", reason=f"not merged: {merge.reason}")]
    elif own:
        out = [StepSkipped(step="docs", reason=docs_skipped_reason(own))]
    else:
        out = await _refresh_docs(deps, ctx)
    verdict = "merged" if merge.merged else "not_merged"
    summary = merge.reason or ("merged into the default branch" if merge.merged else "")
    log_file = deps.run_log.path(ctx.run_id)  # written by on_run_ended, once stored
    out.append(PipelineCompleted(verdict=verdict, summary=summary, run_log=str(log_file)))
    return emit(event, SERVICE, *out)


async def _refresh_docs(deps: Uses, ctx: RunContext) -> list:
    """The three docs regenerated on the default branch and merged through the forge: the engine's
    model calls, then DocsUpdated."""
    repo = await deps.workspace.materialize(ctx.request.repo, ctx.analyzed.default_branch)
    work_id = f"{ctx.run_id}-docs"
    branch = f"{ctx.branch}-docs"
    try:
        path = await deps.workspace.worktree(work_id, ctx.request.repo, repo.base_sha, branch=branch)
        engine = deps.engine(ctx, await previous_calls(deps.store, ctx))
        analysis = await engine.analyze(path)
        written = []
        for key, rel in DOC_FILES.items():
            try:
                write_inside(path, rel, getattr(analysis, key))
                written.append(rel)
            except UnsafePath as exc:
                log.warning("docs: %s not written: %s", rel, exc)
        sha = await deps.changes.commit(path, f"docs: refresh specification, graph and architecture\n\nRepo-Pilot-Run: {ctx.run_id}")
        if sha:
            forge = deps.make_forge(ctx.request.forge, ctx.request.repo)
            await forge.publish(path, branch)
            request = await forge.open_request(path, branch, "Repo Pilot: refresh docs",
                                               f"Docs regenerated after run {ctx.run_id}.")
            sha = await forge.merge(request)
    finally:
        await deps.workspace.remove(work_id)
    return [*engine.drain_calls(), DocsUpdated(files=sorted(written), commit_sha=sha)]


async def on_run_ended(event: Envelope, deps: Uses) -> list[Envelope]:
    """After the run's last event (completed or failed) is in the store: write the run log.

    A log that cannot be written is logged, not raised: raising would record another
    PipelineFailed, which comes back here."""
    try:
        await deps.run_log.write(event.stream_id)
    except OSError as exc:
        log.warning("run log for %s not written: %s", event.stream_id, exc)
    return []
