"""The Workspace port: one contract suite, run against the real Workspace (mirror + local clones
under REPO_PILOT_HOME, over a real git repository) and the in-memory fake the handler unit tests use."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared.adapters.git import git, head_sha
from shared.adapters.workspace import Workspace, commit_all, format_patch
from shared.ports.errors import StepError
from shared.ports.workspace import Workspace as WorkspacePort
from tests.conftest import make_git_repo
from tests.support.fakes import FakeWorkspace

FILES = {"app.py": "A = 1\n", "lib/util.py": "def f():\n    return 1\n"}


@dataclass
class Case:
    workspace: WorkspacePort
    source: str
    missing: str  # a source that does not exist


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration),
                        pytest.param("fake", marks=pytest.mark.unit)])
def case(request, tmp_path) -> Case:
    if request.param == "real":
        repo = make_git_repo(tmp_path / "repo", FILES)
        return Case(Workspace(tmp_path / "home"), str(repo), str(tmp_path / "missing"))
    return Case(FakeWorkspace(tmp_path / "fake", {"demo": FILES}), "demo", "missing")


async def patch_of(case: Case, base: str, rel: str, content: str, name: str) -> str:
    """A format-patch made the way the executor makes one, in a scratch copy."""
    path = await case.workspace.worktree(name, case.source, base)
    (path / rel).parent.mkdir(parents=True, exist_ok=True)
    (path / rel).write_text(content)
    patch = format_patch(path, commit_all(path, f"change {rel}"))
    await case.workspace.remove(name)
    return patch


def test_implements_the_port(case):
    assert isinstance(case.workspace, WorkspacePort)


async def test_materialize_resolves_the_default_branch_head(case):
    repo = await case.workspace.materialize(case.source)
    assert repo.source == case.source and repo.default_branch == "main"
    assert len(repo.base_sha) == 40 and repo.base_sha == head_sha(repo.mirror, "refs/heads/main")


async def test_materialize_refuses_a_missing_source_and_an_unknown_ref(case):
    with pytest.raises(StepError, match="does not exist"):
        await case.workspace.materialize(case.missing)
    with pytest.raises(StepError, match="Unknown ref"):
        await case.workspace.materialize(case.source, "no-such-branch")


async def test_worktree_at_base_with_the_patch_series_applied_in_order(case):
    base = (await case.workspace.materialize(case.source)).base_sha
    first = await patch_of(case, base, "app.py", "A = 2\n", "p1")
    path = await case.workspace.worktree("p2-base", case.source, base, [first])
    (path / "new.py").write_text("B = 1\n")
    second = format_patch(path, commit_all(path, "add new.py"))
    await case.workspace.remove("p2-base")

    built = await case.workspace.worktree("run", case.source, base, [first, second], branch="repo-pilot/x")

    assert (built / "app.py").read_text() == "A = 2\n" and (built / "new.py").read_text() == "B = 1\n"
    assert git(built, "symbolic-ref", "--short", "HEAD") == "repo-pilot/x"
    assert git(built, "rev-list", "--count", f"{base}..HEAD") == "2"
    assert git(built, "log", "--format=%s", "-2").splitlines() == ["add new.py", "change app.py"]


async def test_worktree_again_discards_the_old_copy_and_remove_is_idempotent(case):
    base = (await case.workspace.materialize(case.source)).base_sha
    path = await case.workspace.worktree("run", case.source, base)
    (path / "stray.txt").write_text("left over")
    (path / "app.py").write_text("dirty\n")
    again = await case.workspace.worktree("run", case.source, base)
    assert not (again / "stray.txt").exists() and (again / "app.py").read_text() == FILES["app.py"]
    assert git(again, "rev-parse", "HEAD") == base
    await case.workspace.remove("run")
    assert not again.exists()
    await case.workspace.remove("run")
    await case.workspace.remove("never-made")
