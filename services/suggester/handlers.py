"""suggester: 2–4 concrete improvements per requested category; each becomes a bead."""

from __future__ import annotations

from typing import Protocol

from shared.ports.deps import UsesStore, UsesWorkspace, UsesEngine
from shared.events import Envelope, ImprovementsSuggested
from shared.policy.run import emit, load_context, previous_calls, scaffold_only
from shared.ports.engine import Analysis

SERVICE = "suggester"


class Uses(UsesStore, UsesWorkspace, UsesEngine, Protocol):
    """What the suggester's handlers use: the store, the workspace and the engine."""


async def on_repo_analyzed(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    a = event.data
    work_id = f"{ctx.run_id}-suggest"
    engine = deps.engine(ctx, await previous_calls(deps.store, ctx))
    analysis = Analysis(specification=a.specification, graph=a.graph, architecture=a.architecture,
                        stats=a.stats)
    try:
        path = await deps.workspace.worktree(work_id, ctx.request.repo, a.base_sha)
        improvements = await engine.suggest(path, analysis, list(ctx.request.categories))
        if ctx.request.mode == "scaffold":
            improvements = scaffold_only(improvements, path)
    finally:
        await deps.workspace.remove(work_id)
    return emit(event, SERVICE, *engine.drain_calls(), ImprovementsSuggested(improvements=improvements))
