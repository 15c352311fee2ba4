"""reviewer: a 1–10 score on six dimensions from objective signals, combined with the engine's opinion."""

from __future__ import annotations

from typing import Protocol

from shared.adapters.signals import compute_signals
from shared.ports.deps import UsesStore, UsesWorkspace, UsesEngine
from shared.events import ChangesReviewed, Envelope
from shared.policy.review import combine_review
from shared.policy.run import emit, load_context, previous_calls

SERVICE = "reviewer"


class Uses(UsesStore, UsesWorkspace, UsesEngine, Protocol):
    """What the reviewer's handlers use: the store, the workspace and the engine."""


async def on_changes_committed(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    c = event.data
    work_id = f"{ctx.run_id}-review"
    engine = deps.engine(ctx, await previous_calls(deps.store, ctx))
    try:
        path = await deps.workspace.worktree(work_id, ctx.request.repo, c.base_sha,
                                             [p.patch for p in c.patches])
        signals = await compute_signals(path, c.base_sha, "HEAD")
        # The head sha depends on commit timestamps, so it differs between a run and its replay; the
        # model already sees the diff, and a prompt without it hashes the same, so replays reuse answers.
        for_model = {k: v for k, v in signals.items() if k != "head_sha"}
        model = await engine.review(path, c.base_sha, "HEAD", for_model) if c.patches else None
    finally:
        await deps.workspace.remove(work_id)
    verdict = combine_review(signals, model if engine.name == "llm" else None, ctx.request.threshold)
    if not c.patches:
        verdict = {**verdict, "passed": False, "blockers": [*verdict.get("blockers", []), "no changes"]}
    return emit(event, SERVICE, *engine.drain_calls(), ChangesReviewed(**verdict))
