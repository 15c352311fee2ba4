"""The Workspace port: one contract suite, run against the real Workspace (mirror + local clones
under REPO_PILOT_HOME, over a real git repository) and the in-memory fake the handler unit tests
use. Patches are made through the Changes port, as the executor makes them."""

from __future__ import annotations

import pytest

from shared.ports.errors import StepError
from shared.ports.workspace import Workspace as WorkspacePort
from tests.support.repo_cases import RepoCase, repo_case

FILES = {"app.py": "A = 1\n", "lib/util.py": "def f():\n    return 1\n"}


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration),
                        pytest.param("fake", marks=pytest.mark.unit)])
def case(request, tmp_path) -> RepoCase:
    return repo_case(request.param, tmp_path, FILES)


async def patch_of(case: RepoCase, base: str, rel: str, content: str, name: str, patches=()) -> str:
    """A mailbox patch made the way the executor makes one, in a scratch copy."""
    path = await case.workspace.worktree(name, case.source, base, list(patches))
    (path / rel).parent.mkdir(parents=True, exist_ok=True)
    (path / rel).write_text(content)
    patch, _files = await case.changes.patch_of(path, await case.changes.commit(path, f"change {rel}"))
    await case.workspace.remove(name)
    return patch


def test_implements_the_port(case):
    assert isinstance(case.workspace, WorkspacePort)


async def test_materialize_resolves_the_default_branch_head(case):
    repo = await case.workspace.materialize(case.source)
    assert repo.source == case.source and repo.default_branch == "main" and len(repo.base_sha) == 40
    assert (await case.workspace.materialize(case.source, "main")).base_sha == repo.base_sha
    path = await case.workspace.worktree("at-base", case.source, repo.base_sha)
    assert await case.changes.head(path) == repo.base_sha and (path / "app.py").read_text() == FILES["app.py"]


async def test_materialize_refuses_a_missing_source_and_an_unknown_ref(case):
    with pytest.raises(StepError, match="does not exist"):
        await case.workspace.materialize(case.missing)
    with pytest.raises(StepError, match="Unknown ref"):
        await case.workspace.materialize(case.source, "no-such-branch")


async def test_worktree_at_base_with_the_patch_series_applied_in_order(case):
    base = (await case.workspace.materialize(case.source)).base_sha
    first = await patch_of(case, base, "app.py", "A = 2\n", "p1")
    second = await patch_of(case, base, "new.py", "B = 1\n", "p2", [first])

    built = await case.workspace.worktree("run", case.source, base, [first, second], branch="repo-pilot/x")

    assert (built / "app.py").read_text() == "A = 2\n" and (built / "new.py").read_text() == "B = 1\n"
    assert case.branch(built) == "repo-pilot/x"
    assert case.subjects(built, base) == ["change new.py", "change app.py"]
    again = await case.workspace.worktree("again", case.source, base, [first, second])
    assert await case.changes.head(again) == await case.changes.head(built)  # a series rebuilds to the same commits


async def test_a_patch_that_does_not_apply_is_a_step_error(case):
    base = (await case.workspace.materialize(case.source)).base_sha
    first = await patch_of(case, base, "app.py", "A = 2\n", "p1")
    clash = await patch_of(case, base, "app.py", "A = 3\n", "p2")
    with pytest.raises(StepError, match="does not apply"):
        await case.workspace.worktree("run", case.source, base, [first, clash])


async def test_worktree_again_discards_the_old_copy_and_remove_is_idempotent(case):
    base = (await case.workspace.materialize(case.source)).base_sha
    path = await case.workspace.worktree("run", case.source, base)
    (path / "stray.txt").write_text("left over")
    (path / "app.py").write_text("dirty\n")
    again = await case.workspace.worktree("run", case.source, base)
    assert not (again / "stray.txt").exists() and (again / "app.py").read_text() == FILES["app.py"]
    assert await case.changes.head(again) == base
    await case.workspace.remove("run")
    assert not again.exists()
    await case.workspace.remove("run")
    await case.workspace.remove("never-made")
