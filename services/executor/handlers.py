"""executor: a run branch at the base sha, one commit per improvement, then the patch series.

Each improvement is implemented in its own scratch copy at the base sha, so model calls for
different improvements run concurrently; their diffs are then committed on the run branch one by
one in the suggested (stable) order. A diff that no longer applies after the earlier ones is
rejected with that reason rather than forced.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from shared.adapters.git import GitError, git, git_apply_patch, git_patch
from shared.adapters.project_checks import gate_change
from shared.adapters.workspace import commit_all, format_patch
from shared.events.limits import patch_refusal
from shared.ports.deps import UsesSandbox, UsesStore, UsesWorkspace, UsesEngine
from shared.events import (
    ChangeApplied,
    ChangeRejected,
    ChangesCommitted,
    Envelope,
    Improvement,
    PatchEntry,
    StepStarted,
)
from shared.policy.run import emit, load_context, previous_calls
from shared.ports.errors import ChangeRejectedError

SERVICE = "executor"


class Uses(UsesStore, UsesWorkspace, UsesEngine, UsesSandbox, Protocol):
    """What the executor's handlers use: the store, the workspace, the engine and the sandbox (the
    project's own checks run in it)."""
CONCURRENCY = 4
# Fixes a tool derives from the code itself (ruff, codemods): implementing one again on top of the
# earlier improvements is the same fix, rebased.
REDERIVED = ("lint:", "lint-unsafe:", "codemod:", "ruff:")


async def on_improvements_suggested(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    base = ctx.analyzed.base_sha
    engine = deps.engine(ctx, await previous_calls(deps.store, ctx))
    gate = asyncio.Semaphore(CONCURRENCY)

    async def draft(n: int, imp: Improvement) -> tuple[str | None, str]:
        """(diff, what the engine says it did) or (None, reason), computed in a scratch copy at the base sha."""
        scratch = f"{ctx.run_id}-imp{n}"
        async with gate:
            # Stamped now, appended with the rest: the improvement's bead gets its real duration.
            begun[imp.id] = emit(event, SERVICE, StepStarted(step=f"improvement:{imp.id}"))
            try:
                path = await deps.workspace.worktree(scratch, ctx.request.repo, base)
                done = await engine.implement(path, imp)
                await gate_change(path, base, deps.sandbox)  # the project's own checks: repair or reject
                diff = _staged_diff(path, base, done)
            except ChangeRejectedError as exc:
                return None, exc.reason
            except GitError as exc:
                return None, f"its patch could not be built: {exc.stderr.strip()[:300] or exc}"
            finally:
                await deps.workspace.remove(scratch)
        return (diff, done.summary) if diff.strip() else (None, "the engine made no change for this improvement")

    async def redo(n: int, imp: Improvement, done: list[PatchEntry]) -> tuple[str | None, str]:
        """(diff, summary) or (None, reason): the improvement implemented on top of the patches so far."""
        scratch = f"{ctx.run_id}-redo{n}"
        path = await deps.workspace.worktree(scratch, ctx.request.repo, base, [p.patch for p in done])
        try:
            head = git(path, "rev-parse", "HEAD")
            done = await engine.implement(path, imp)
            await gate_change(path, head, deps.sandbox)
            diff = _staged_diff(path, head, done)
        except ChangeRejectedError as exc:
            return None, exc.reason
        finally:
            await deps.workspace.remove(scratch)
        return (diff, done.summary) if diff.strip() else (None, "no change left to make")

    improvements = list(event.data.improvements)
    begun: dict[str, list[Envelope]] = {}
    # Every draft runs to its end (and removes its scratch copy) before a failure propagates.
    drafts = await asyncio.gather(*(draft(n, imp) for n, imp in enumerate(improvements)), return_exceptions=True)
    failed = next((d for d in drafts if isinstance(d, BaseException)), None)
    if failed is not None:
        raise failed

    out: list[Envelope] = []  # stamped as they happen, so beads get real times

    def add(payload) -> None:
        out.extend(emit(event, SERVICE, payload))

    patches: list[PatchEntry] = []
    # The working copy is rebuilt from events alone, so a redelivery starts from the same state.
    series = 0
    try:
        path = await deps.workspace.worktree(ctx.run_id, ctx.request.repo, base, branch=ctx.branch)
        for imp, (diff, reason) in zip(improvements, drafts, strict=True):
            out.extend(begun[imp.id])
            if diff is not None and (too_big := patch_refusal(len(diff), series)):
                diff, reason = None, too_big
            if diff is not None:
                try:
                    git_apply_patch(path, "apply", "--3way", "--whitespace=nowarn", patch=diff)
                except GitError as exc:
                    _discard(path)
                    diff, reason = (await redo(len(out), imp, patches) if (imp.rule or "").startswith(REDERIVED)
                                    else (None, ""))
                    if diff is not None:
                        try:
                            git_apply_patch(path, "apply", "--whitespace=nowarn", patch=diff)
                        except GitError as again:
                            _discard(path)
                            diff, reason = None, f"that did not apply either: {again.stderr.strip()[:200]}"
                    if diff is None:
                        # Two tool fixes of neighbouring lines (an import removed, one added beside it)
                        # conflict; a fix a tool derives from the code was made again on top, once.
                        reason = rejection_reason(exc.stderr) + (
                            f"; implemented again on top of them: {reason}" if reason else "")
            if diff is None:
                add(ChangeRejected(improvement_id=imp.id, reason=reason))
                continue
            done_line = f"\n\nWhat was done: {reason}" if reason else ""  # e.g. which sites, and why (behaviour)
            sha = commit_all(path, f"{imp.category}: {imp.title}\n\n{imp.rationale}{done_line}\n\n"
                                   f"Repo-Pilot-Improvement: {imp.id}")
            if sha is None:  # the patch applied but changed nothing: an earlier improvement made it already
                add(ChangeRejected(improvement_id=imp.id, reason="its change is already made by an earlier "
                                                                 "improvement of this run"))
                continue
            patch = format_patch(path, sha)
            files = sorted(filter(None, git(path, "show", "--name-only", "--format=", sha).splitlines()))
            add(ChangeApplied(improvement_id=imp.id, patch=patch, files=files, commit_sha=sha, summary=reason[:2000]))
            patches.append(PatchEntry(improvement_id=imp.id, commit_sha=sha, patch=patch))
            series += len(patch)
        head = git(path, "rev-parse", "HEAD")
    finally:
        await deps.workspace.remove(ctx.run_id)
    add(ChangesCommitted(branch=ctx.branch, base_sha=base, head_sha=head, patches=patches))
    return emit(event, SERVICE, *engine.drain_calls()) + out


def _discard(path) -> None:
    git(path, "reset", "--hard", "-q")
    git(path, "clean", "-fdq")


def rejection_reason(stderr: str) -> str:
    """Why a drafted diff did not apply on the run branch: a real overlap with an earlier
    improvement, or a patch git could not read (a bug on our side, named as such)."""
    detail = stderr.strip()[:300]
    if any(s in stderr for s in ("corrupt patch", "malformed patch", "patch fragment without header",
                                 "No valid patches", "unrecognized input")):
        return f"its patch could not be applied as built (not a conflict): {detail}"
    return f"conflicts with an earlier improvement: {detail}"


def _staged_diff(path, since: str, done) -> str:
    """Stage what the engine changed and return it as a patch against `since`, byte for byte (a diff
    may end in a context line that is a single space; see `git_patch`).

    A file the engine wrote on purpose is staged even when the repository's .gitignore matches it
    (tabulate ignores `.*`, so .github/dependabot.yml vanished silently)."""
    git(path, "add", "--all")
    wrote = [f for f in (getattr(done, "files", None) or []) if (path / f).is_file()]
    if wrote:
        git(path, "add", "--force", "--", *wrote)
    return git_patch(path, "diff", "--cached", "--binary", since)
