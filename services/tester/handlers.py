"""tester: generated tests per category plus the repository's own suite before and after, in the sandbox."""

from __future__ import annotations

from typing import Protocol

from shared.adapters.sandbox import run_pytest
from shared.common.fs import UnsafePath, write_inside
from shared.adapters.target_env import TargetPython, python_for, same_dependencies
from shared.ports.deps import UsesSettings, UsesStore, UsesWorkspace, UsesSandbox, UsesEngine
from shared.events import Envelope, TestGroupResult, TestsCompleted, TestsGenerated
from shared.policy.run import emit, load_context, previous_calls, regressed

SERVICE = "tester"


class Uses(UsesSettings, UsesStore, UsesWorkspace, UsesSandbox, UsesEngine, Protocol):
    """What the tester's handlers use: the store, the workspace, the sandbox, the engine and the settings (env home)."""
TIMEOUT = 600


async def on_changes_committed(event: Envelope, deps: Uses) -> list[Envelope]:
    ctx = await load_context(deps.store, event)
    c = event.data
    before_id, after_id = f"{ctx.run_id}-test-base", f"{ctx.run_id}-test-head"
    try:
        before_path = await deps.workspace.worktree(before_id, ctx.request.repo, c.base_sha)
        after_path = await deps.workspace.worktree(after_id, ctx.request.repo, c.base_sha,
                                                   [p.patch for p in c.patches])
        py = await python_for(after_path, deps.settings.home, deps.sandbox)
        py_before = py if same_dependencies(before_path, after_path) else await python_for(
            before_path, deps.settings.home, deps.sandbox)
        own_before = _noted(await run_pytest(deps.sandbox, before_path, timeout=TIMEOUT, group="own",
                                             python=py_before.executable), py_before)
        await deps.workspace.remove(before_id)  # early: the copy is no longer needed
        own_after = _noted(await run_pytest(deps.sandbox, after_path, timeout=TIMEOUT, group="own",
                                            python=py.executable), py)
        engine = deps.engine(ctx, await previous_calls(deps.store, ctx))
        applied_ids = {p.improvement_id for p in c.patches}
        improvements = [i for i in ctx.suggested.improvements if i.id in applied_ids] if ctx.suggested else []
        generated = await engine.write_tests(after_path, improvements, list(ctx.request.categories))
        files: dict[str, str] = {}
        results: list[TestGroupResult] = []
        for group, group_files in sorted(generated.groups.items()):
            refused = []
            for rel, content in group_files.items():
                try:
                    write_inside(after_path, rel, content)
                except UnsafePath as exc:
                    refused.append(str(exc))
                    continue
                files[rel] = content
            written = sorted(f for f in group_files if f in files)
            result = await run_pytest(deps.sandbox, after_path, written, timeout=TIMEOUT, group=group,
                                      python=py.executable) if written else TestGroupResult(group=group)
            results.append(_refused(result, refused))
    finally:
        await deps.workspace.remove(before_id)
        await deps.workspace.remove(after_id)
    groups = {g: sorted(fs) for g, fs in generated.groups.items()}
    return emit(event, SERVICE, *engine.drain_calls(),
                TestsGenerated(files=files, groups=groups),
                TestsCompleted(groups=results, own_before=own_before, own_after=own_after,
                               regressed=regressed(own_before, own_after)))


def _noted(result: TestGroupResult, py: TargetPython) -> TestGroupResult:
    """The result with a head line saying which interpreter ran the suite, and why."""
    return result.model_copy(update={"output": f"python: {py.executable} ({py.note})\n{result.output}"})


def _refused(result: TestGroupResult, refused: list[str]) -> TestGroupResult:
    """A generated test file that would land outside the working copy is not written: one error each."""
    if not refused:
        return result
    note = "".join(f"not written: {why}\n" for why in refused)
    return result.model_copy(update={"errors": result.errors + len(refused), "output": note + result.output})
