"""merger: after the review (which follows the tests), push, open a merge request, merge when the gate allows."""

from __future__ import annotations

from typing import Protocol

from shared.events import Envelope, MergeCompleted, StepCompleted
from shared.policy.edits import resolve_inside
from shared.policy.review import merge_gate, tests_to_commit
from shared.policy.run import RunContext, emit, load_context
from shared.ports.deps import UsesChanges, UsesForge, UsesStore, UsesWorkspace

SERVICE = "merger"


class Uses(UsesStore, UsesWorkspace, UsesChanges, UsesForge, Protocol):
    """What the merger's handlers use: the store, the workspace and changes (the tests' commit), and the forge."""


async def on_changes_reviewed(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    if ctx.merged is not None:  # the run was merged (or left open) already
        return []
    result = await _merge(deps, ctx) if ctx.committed.patches else MergeCompleted(
        pushed=False, branch=ctx.committed.branch, merged=False,
        reason="no improvement could be applied: nothing to merge")
    summary = result.reason if not result.pushed else (
        f"merged {result.merge_sha[:10]}" if result.merged else f"left open: {result.reason}")
    return emit(event, SERVICE, result, StepCompleted(step="merge", summary=summary))


async def _merge(deps: Uses, ctx: RunContext) -> MergeCompleted:
    """Push the run branch (with its tests' commit), open a request, merge it when the gate allows;
    each forge action checks first whether it was already done, so a redelivery never doubles it."""
    c, review = ctx.committed, ctx.review
    ok, why = merge_gate(review, ctx.tests)
    work_id = f"{ctx.run_id}-merge"
    body = f"{review.summary}\n\nScore {review.overall:.1f}/10 (threshold {review.threshold}).\n"
    try:
        path = await deps.workspace.worktree(work_id, ctx.request.repo, c.base_sha,
                                             [p.patch for p in c.patches], branch=c.branch)
        await _commit_tests(deps, ctx, path)
        forge = deps.make_forge(ctx.request.forge, ctx.request.repo)
        # A replay (or a run on a stale base) must not merge what the target already has.
        already_has = getattr(forge, "already_has", None)  # the GitHub forge cannot tell yet
        base = await already_has(path, c.branch) if ok and already_has is not None else None
        if base is not None:
            replay = f" (a replay of {ctx.replayed_from})" if ctx.replayed_from else ""
            return MergeCompleted(pushed=False, branch=c.branch, merged=False,
                                  reason=f"already merged: {base} already has every change of this run{replay}")
        await forge.publish(path, c.branch)
        request = await forge.open_request(path, c.branch, f"Repo Pilot: {len(c.patches)} improvements", body)
        merge_sha = await forge.merge(request) if ok else None
    finally:
        await deps.workspace.remove(work_id)
    return MergeCompleted(pushed=True, branch=c.branch, pr_url=request.url, merged=ok, merge_sha=merge_sha, reason=why)


async def _commit_tests(deps: Uses, ctx: RunContext, path) -> None:
    """The tests of the change merge with it, in their own commit (when any passed and test it)."""
    committed_tests = tests_to_commit(ctx.generated, ctx.tests)
    if not committed_tests:
        return
    for rel, content in committed_tests.items():
        target = resolve_inside(path, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    await deps.changes.commit(path, f"tests: {len(committed_tests)} generated test file(s) of the change\n\n"
                              "Written by Repo Pilot; they passed on the change and test what it changed.")
