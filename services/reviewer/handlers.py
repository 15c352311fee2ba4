"""reviewer: a 1–10 score from evidence (findings, the tests' results, validated fixes, size), with the
model's opinion blended in when the engine is a model. It reacts to TestsCompleted, so the score a
user sees includes the test results (docs/review.md)."""

from __future__ import annotations

from typing import Protocol

from shared.events import ChangesReviewed, Envelope
from shared.policy.run import emit, load_context, previous_calls, review_verdict
from shared.ports.deps import UsesEngine, UsesSignals, UsesStore, UsesWorkspace

SERVICE = "reviewer"


class Uses(UsesStore, UsesWorkspace, UsesEngine, UsesSignals, Protocol):
    """What the reviewer's handlers use: the store, the workspace, the engine and the change's signals."""


async def on_tests_completed(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    c = ctx.committed
    work_id = f"{ctx.run_id}-review"
    engine = deps.engine(ctx, await previous_calls(deps.store, ctx))
    model = None
    try:
        path = await deps.workspace.worktree(work_id, ctx.request.repo, c.base_sha, [p.patch for p in c.patches])
        signals = await deps.signals.compute(path, c.base_sha, "HEAD")
        if engine.name == "llm" and c.patches:
            # The head sha depends on commit timestamps, so it differs between a run and its replay; the
            # model already sees the diff, and a prompt without it hashes the same, so replays reuse answers.
            model = await engine.review(path, c.base_sha, "HEAD", {k: v for k, v in signals.items() if k != "head_sha"})
    finally:
        await deps.workspace.remove(work_id)
    return emit(event, SERVICE, *engine.drain_calls(), ChangesReviewed(**review_verdict(ctx, signals, model)))
