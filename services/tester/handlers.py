"""tester: generated tests per category plus the repository's own suite before and after, in the sandbox."""

from __future__ import annotations

from pathlib import Path

from typing import Protocol

from shared.adapters.own_tests import combined, run_ecosystem_suite, run_generated_files, run_own_pytest
from shared.adapters.sandbox import run_pytest
from shared.adapters.target_env import TargetPython, python_for, same_dependencies
from shared.engines.rules.facts import list_files
from shared.engines.rules.project import detect as detect_project
from shared.common.fs import UnsafePath, write_inside
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
        language = detect_project(before_path, list_files(before_path)).language or "python"
        if language == "python":
            own_before = await run_own_pytest(deps.sandbox, before_path, py_before, TIMEOUT)
        else:  # the repository's own runner (npm/node, cargo, go); generated tests stay pytest
            own_before = await run_ecosystem_suite(deps.sandbox, before_path, language, TIMEOUT)
        await deps.workspace.remove(before_id)  # early: the copy is no longer needed
        if language == "python":
            own_after = await run_own_pytest(deps.sandbox, after_path, py, TIMEOUT)
        else:
            own_after = await run_ecosystem_suite(deps.sandbox, after_path, language, TIMEOUT)
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
            results.append(_refused(await _run_generated(deps, after_path, written, group, py), refused))
    finally:
        await deps.workspace.remove(before_id)
        await deps.workspace.remove(after_id)
    groups = {g: sorted(fs) for g, fs in generated.groups.items()}
    return emit(event, SERVICE, *engine.drain_calls(),
                TestsGenerated(files=files, groups=groups),
                TestsCompleted(groups=results, own_before=own_before, own_after=own_after,
                               regressed=regressed(own_before, own_after)))


async def _run_generated(deps: Uses, path: Path, written: list[str], group: str, py: TargetPython) -> TestGroupResult:
    """One group's generated files: pytest files in the target's env, the others (a JavaScript or
    Rust repository's) with their ecosystem's runner."""
    pytest_files = [f for f in written if f.endswith(".py")]
    others = [f for f in written if not f.endswith(".py")]
    parts = []
    if pytest_files:
        parts.append(await run_pytest(deps.sandbox, path, pytest_files, timeout=TIMEOUT, group=group,
                                      python=py.executable, plugins=py.plugins))
    if others:
        parts.append(await run_generated_files(deps.sandbox, path, others, group, TIMEOUT))
    return combined(group, parts)


def _refused(result: TestGroupResult, refused: list[str]) -> TestGroupResult:
    """A generated test file that would land outside the working copy is not written: one error each."""
    if not refused:
        return result
    note = "".join(f"not written: {why}\n" for why in refused)
    return result.model_copy(update={"errors": result.errors + len(refused), "output": note + result.output})
