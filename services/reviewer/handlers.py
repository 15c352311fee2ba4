"""reviewer: a 1–10 score from evidence (findings, the tests' results, validated fixes, size), with the
model's opinion blended in when the engine is a model. It reacts to TestsCompleted, so the score a
user sees includes the test results (docs/review.md)."""

from __future__ import annotations

from typing import Protocol

from shared.adapters.signals import compute_signals
from shared.events import ChangesReviewed, Envelope
from shared.policy.behaviour import changes_behaviour
from shared.policy.review import combine_review, explicitly_asked
from shared.policy.run import emit, load_context, previous_calls
from shared.ports.deps import UsesEngine, UsesStore, UsesWorkspace

SERVICE = "reviewer"


class Uses(UsesStore, UsesWorkspace, UsesEngine, Protocol):
    """What the reviewer's handlers use: the store, the workspace and the engine."""


async def on_tests_completed(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    c = ctx.committed
    work_id = f"{ctx.run_id}-review"
    engine = deps.engine(ctx, await previous_calls(deps.store, ctx))
    model = None
    try:
        path = await deps.workspace.worktree(work_id, ctx.request.repo, c.base_sha,
                                             [p.patch for p in c.patches])
        signals = await compute_signals(path, c.base_sha, "HEAD")
        if engine.name == "llm" and c.patches:
            # The head sha depends on commit timestamps, so it differs between a run and its replay; the
            # model already sees the diff, and a prompt without it hashes the same, so replays reuse answers.
            for_model = {k: v for k, v in signals.items() if k != "head_sha"}
            model = await engine.review(path, c.base_sha, "HEAD", for_model)
    finally:
        await deps.workspace.remove(work_id)
    applied = {p.improvement_id for p in c.patches}
    signals["validated_fixes"] = sum(
        1 for i in (ctx.suggested.improvements if ctx.suggested else [])
        if i.id in applied and changes_behaviour(i.rule))
    # Documents and configs alone may merge only when the request asked for those categories on their own.
    signals["asked_for_files"] = any(explicitly_asked(c, ctx.request.categories) for c in ("compliance", "integration"))
    tests = ctx.tests.model_dump() if ctx.tests else None
    verdict = combine_review(signals, model, ctx.request.threshold, tests=tests)
    if not c.patches:
        verdict = {**verdict, "passed": False, "blockers": [*verdict.get("blockers", []), "no changes"]}
    return emit(event, SERVICE, *engine.drain_calls(), ChangesReviewed(**verdict))
