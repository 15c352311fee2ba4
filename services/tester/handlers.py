"""tester: generated tests per category plus the repository's own suite before and after, in the sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from shared.common.fs import UnsafePath, write_inside
from shared.events import Envelope, TestGroupResult, TestsCompleted, TestsGenerated
from shared.policy.run import applied_improvements, emit, load_context, previous_calls, regressed
from shared.ports.deps import UsesEngine, UsesStore, UsesSuites, UsesWorkspace
from shared.ports.engine import GeneratedTests
from shared.ports.suites import Suite

SERVICE = "tester"


class Uses(UsesStore, UsesWorkspace, UsesSuites, UsesEngine, Protocol):
    """What the tester's handlers use: the store, the workspace, the test suites (in the sandbox) and the engine."""


async def on_changes_committed(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    c = event.data
    before_id, after_id = f"{ctx.run_id}-test-base", f"{ctx.run_id}-test-head"
    try:
        before = await deps.workspace.worktree(before_id, ctx.request.repo, c.base_sha)
        after = await deps.workspace.worktree(after_id, ctx.request.repo, c.base_sha, [p.patch for p in c.patches])
        engine = deps.engine(ctx, await previous_calls(deps.store, ctx))

        async def own_suites() -> tuple[Suite, TestGroupResult, TestGroupResult]:
            suite_before, suite = await deps.suites.prepare(before, after)
            own_before = await deps.suites.run_own(before, suite_before)
            await deps.workspace.remove(before_id)  # early: the copy is no longer needed
            return suite, own_before, await deps.suites.run_own(after, suite)

        # The model writes the tests while the project's own suite runs: neither needs the other,
        # and the model's wait was added to the suite's. Both run to their end before a failure
        # propagates, so neither outlives the copies.
        own, generated = await asyncio.gather(
            own_suites(),
            engine.write_tests(after, applied_improvements(ctx), list(ctx.request.categories)),
            return_exceptions=True,
        )
        for result in (own, generated):
            if isinstance(result, BaseException):
                raise result
        suite, own_before, own_after = own
        written, results = await _run_generated(deps, after, generated, suite)
    finally:
        await deps.workspace.remove(before_id)
        await deps.workspace.remove(after_id)
    return emit(event, SERVICE, *engine.drain_calls(), written,
                TestsCompleted(groups=results, own_before=own_before, own_after=own_after,
                               regressed=regressed(own_before, own_after)))


async def _run_generated(deps: Uses, path: Path, generated: GeneratedTests,
                         suite: Suite) -> tuple[TestsGenerated, list[TestGroupResult]]:
    """Each group's files written into the copy and run: (what was written, one result per group)."""
    files: dict[str, str] = {}
    results: list[TestGroupResult] = []
    for group, group_files in sorted(generated.groups.items()):
        refused = []
        for rel, content in group_files.items():
            try:
                write_inside(path, rel, content)
            except UnsafePath as exc:
                refused.append(str(exc))
                continue
            files[rel] = content
        written = sorted(f for f in group_files if f in files)
        results.append(_refused(await deps.suites.run_generated(path, written, group, suite), refused))
    groups = {g: sorted(fs) for g, fs in generated.groups.items()}
    return TestsGenerated(files=files, groups=groups), results


def _refused(result: TestGroupResult, refused: list[str]) -> TestGroupResult:
    """A generated test file that would land outside the working copy is not written: one error each."""
    if not refused:
        return result
    note = "".join(f"not written: {why}\n" for why in refused)
    return result.model_copy(update={"errors": result.errors + len(refused), "output": note + result.output})
