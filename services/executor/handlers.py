"""executor: a run branch at the base sha, one commit per improvement, then the patch series.

Each improvement is implemented in its own scratch copy at the base sha, so model calls for
different improvements run concurrently; their diffs are then committed on the run branch one by
one in the suggested (stable) order. A diff that no longer applies after the earlier ones is
rejected with that reason rather than forced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from shared.events import (
    ChangeApplied,
    ChangeRejected,
    ChangesCommitted,
    Envelope,
    Improvement,
    PatchEntry,
    ProjectChecks,
    StepStarted,
)
from shared.events.limits import patch_refusal
from shared.policy.checks_gate import checks_of
from shared.policy.run import RunContext, emit, load_context, previous_calls
from shared.policy.series import commit_message, rederived, rejection_reason
from shared.ports.changes import PatchConflict
from shared.ports.deps import UsesChanges, UsesEngine, UsesStore, UsesWorkspace
from shared.ports.engine import Engine
from shared.ports.errors import ChangeRejectedError

SERVICE = "executor"
CONCURRENCY = 4

Draft = tuple[str | None, str]  # (diff, what the engine says it did) or (None, why there is none)


@dataclass
class _Bead:
    """An improvement's bead: its StepStarted, stamped when its draft starts, and when the draft
    ended (its outcome is stamped then, unless more work follows in the commit phase)."""

    started: list[Envelope]
    drafted_at: datetime | None = None
    checks: ProjectChecks | None = None  # what the project's own checks said about the draft


class Uses(UsesStore, UsesWorkspace, UsesEngine, UsesChanges, Protocol):
    """What the executor's handlers use: the store, the workspace, the engine and the changes port
    (which runs the project's own checks on each draft)."""


async def on_improvements_suggested(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    engine = deps.engine(ctx, await previous_calls(deps.store, ctx))
    improvements = list(event.data.improvements)
    beads: dict[str, _Bead] = {}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def draft(n: int, imp: Improvement) -> Draft:
        async with gate:
            bead = beads[imp.id] = _Bead(emit(event, SERVICE, StepStarted(step=f"improvement:{imp.id}")))
            drafted = await _implement(deps, engine, ctx, f"{ctx.run_id}-imp{n}", imp, (),
                                       "the engine made no change for this improvement", bead)
            bead.drafted_at = datetime.now(UTC)
            return drafted

    # Every draft runs to its end (and removes its scratch copy) before a failure propagates.
    drafts = await asyncio.gather(*(draft(n, imp) for n, imp in enumerate(improvements)), return_exceptions=True)
    if failed := next((d for d in drafts if isinstance(d, BaseException)), None):
        raise failed
    out = await _commit_series(deps, engine, ctx, event, improvements, drafts, beads)
    return emit(event, SERVICE, *engine.drain_calls()) + out


async def _implement(deps: Uses, engine: Engine, ctx: RunContext, scratch: str, imp: Improvement,
                     patches: Sequence[PatchEntry], nothing: str, bead: _Bead | None = None) -> Draft:
    """The improvement implemented in scratch copy at the base sha plus `patches`; `nothing` is
    the reason when the engine changed nothing. The project's checks go on `bead`."""
    try:
        path = await deps.workspace.worktree(scratch, ctx.request.repo, ctx.analyzed.base_sha,
                                             [p.patch for p in patches])
        drafted = await deps.changes.draft(path, lambda: engine.implement(path, imp))
    except ChangeRejectedError as exc:
        if bead is not None:
            bead.checks = checks_of(exc)
        return None, exc.reason
    finally:
        await deps.workspace.remove(scratch)
    if bead is not None:
        bead.checks = drafted.checks
    return (drafted.diff, drafted.done.summary) if drafted.diff.strip() else (None, nothing)


async def _commit_series(deps: Uses, engine: Engine, ctx: RunContext, event: Envelope,
                         improvements: list[Improvement], drafts: list[Draft],
                         beads: dict[str, _Bead]) -> list[Envelope]:
    """The drafts committed on the run branch in order: ChangeApplied / ChangeRejected each, then
    ChangesCommitted. An outcome is stamped when its draft ended (the drafts run concurrently, so
    stamping them all here gave every bead the whole phase's duration), or when it happens if a
    conflict made more work."""
    out: list[Envelope] = []
    patches: list[PatchEntry] = []
    series = 0  # bytes of patch so far
    try:
        # The working copy is rebuilt from events alone, so a redelivery starts from the same state.
        path = await deps.workspace.worktree(ctx.run_id, ctx.request.repo, ctx.analyzed.base_sha, branch=ctx.branch)
        for n, (imp, (diff, reason)) in enumerate(zip(improvements, drafts, strict=True)):
            out.extend(beads[imp.id].started)
            at = beads[imp.id].drafted_at
            if diff is not None and (too_big := patch_refusal(len(diff), series)):
                diff, reason = None, too_big
            if diff is not None:
                applied = await _apply(deps, engine, ctx, path, n, imp, (diff, reason), patches)
                at = at if applied[0] is diff else None  # it conflicted: stamped now
                diff, reason = applied
            sha = await deps.changes.commit(path, commit_message(imp, reason)) if diff is not None else None
            if diff is not None and sha is None:  # applied but changed nothing: an earlier one made it
                reason = "its change is already made by an earlier improvement of this run"
            if sha is None:
                out += _stamped(emit(event, SERVICE, ChangeRejected(improvement_id=imp.id, reason=reason,
                                                                checks=beads[imp.id].checks)), at)
                continue
            patch, files = await deps.changes.patch_of(path, sha)
            out += _stamped(emit(event, SERVICE, ChangeApplied(improvement_id=imp.id, patch=patch, files=files,
                                                               commit_sha=sha, summary=reason[:2000],
                                                               checks=beads[imp.id].checks)), at)
            patches.append(PatchEntry(improvement_id=imp.id, commit_sha=sha, patch=patch))
            series += len(patch)
        head = await deps.changes.head(path)
    finally:
        await deps.workspace.remove(ctx.run_id)
    committed = ChangesCommitted(branch=ctx.branch, base_sha=ctx.analyzed.base_sha, head_sha=head, patches=patches)
    return out + emit(event, SERVICE, committed)


async def _apply(deps: Uses, engine: Engine, ctx: RunContext, path, n: int, imp: Improvement, drafted: Draft,
                 patches: list[PatchEntry]) -> Draft:
    """The draft applied to the run branch; when it conflicts, a fix a tool derives from the code
    is made again on top of the series, once (two tool fixes of neighbouring lines — an import
    removed, one added beside it — conflict)."""
    try:
        await deps.changes.apply(path, drafted[0], three_way=True)
        return drafted
    except PatchConflict as exc:
        conflict = exc.stderr
    again, note = (await _implement(deps, engine, ctx, f"{ctx.run_id}-redo{n}", imp, patches,
                                    "no change left to make") if rederived(imp) else (None, ""))
    if again is not None:
        try:
            await deps.changes.apply(path, again)
            return again, note
        except PatchConflict as exc:
            note = f"that did not apply either: {exc.stderr.strip()[:200]}"
    return None, rejection_reason(conflict, note)


def _stamped(events: list[Envelope], at: datetime | None) -> list[Envelope]:
    return [e.model_copy(update={"occurred_at": at}) for e in events] if at else events
