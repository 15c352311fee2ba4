"""The Changes port: one contract suite, run against the real GitChanges (git, and the project's
own checks in a real local sandbox) and the in-memory fake the handler unit tests use (checks
scripted), each over working copies from its own workspace."""

from __future__ import annotations

import inspect

import pytest

from shared.ports.changes import Changes, PatchConflict
from shared.ports.engine import Implementation
from shared.ports.errors import ChangeRejectedError
from tests.support.repo_cases import RepoCase, repo_case

FILES = {"app.py": "A = 1\n", ".gitignore": ".*\n!.gitignore\n"}


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration),
                        pytest.param("fake", marks=pytest.mark.unit)])
def case(request, tmp_path) -> RepoCase:
    return repo_case(request.param, tmp_path, FILES)


async def copy(case: RepoCase, name: str = "copy"):
    base = (await case.workspace.materialize(case.source)).base_sha
    return await case.workspace.worktree(name, case.source, base)


def writes(path, files: dict[str, str]):
    async def implement() -> Implementation:
        for rel, content in files.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(content)
        return Implementation(files=sorted(files), summary="wrote")
    return implement


def test_implements_the_port(case):
    assert isinstance(case.changes, Changes)


@pytest.mark.parametrize("method", ["draft", "head", "apply", "commit", "patch_of"])
def test_every_method_is_awaited(case, method):
    # The services share one event loop: a method that ran git inline stalled every consumer.
    assert inspect.iscoroutinefunction(getattr(case.changes, method))


async def test_a_draft_is_the_change_against_head_and_applies_elsewhere(case):
    changes, path = case.changes, await copy(case)
    drafted = await changes.draft(path, writes(path, {"app.py": "A = 2\n", "lib/new.py": "B = 1\n"}))
    assert drafted.done.summary == "wrote" and drafted.diff

    other = await copy(case, "other")
    await changes.apply(other, drafted.diff, three_way=True)
    assert (other / "app.py").read_text() == "A = 2\n" and (other / "lib/new.py").read_text() == "B = 1\n"
    sha = await changes.commit(other, "change app and add lib")
    assert sha == await changes.head(other) and len(sha) == 40
    patch, files = await changes.patch_of(other, sha)
    assert files == ["app.py", "lib/new.py"] and patch.startswith("From ")
    assert "Subject: [PATCH] change app and add lib" in patch


async def test_a_file_the_engine_names_is_in_the_draft_even_when_ignored(case):
    changes, path = case.changes, await copy(case)
    drafted = await changes.draft(path, writes(path, {".github/dependabot.yml": "version: 2\n"}))
    other = await copy(case, "other")
    await changes.apply(other, drafted.diff)
    assert (other / ".github/dependabot.yml").read_text() == "version: 2\n"


async def test_no_change_is_an_empty_draft_and_no_commit(case):
    changes, path = case.changes, await copy(case)
    drafted = await changes.draft(path, writes(path, {}))
    assert drafted.diff == ""
    assert await changes.commit(path, "nothing") is None


async def test_a_rejection_by_the_engine_propagates(case):
    path = await copy(case)

    async def refuse() -> Implementation:
        raise ChangeRejectedError("not safe")

    with pytest.raises(ChangeRejectedError, match="not safe"):
        await case.changes.draft(path, refuse)


async def test_a_conflicting_patch_raises_and_leaves_the_copy_clean(case):
    changes, path = case.changes, await copy(case)
    drafted = await changes.draft(path, writes(path, {"app.py": "A = 2\n"}))
    other = await copy(case, "other")
    (other / "app.py").write_text("A = 3\n")
    await changes.commit(other, "A = 3")
    for three_way in (True, False):
        with pytest.raises(PatchConflict) as caught:
            await changes.apply(other, drafted.diff, three_way=three_way)
        assert caught.value.stderr
        assert await changes.commit(other, "anything left?") is None and (other / "app.py").read_text() == "A = 3\n"


async def test_a_three_way_apply_of_what_is_already_there_is_no_change(case):
    changes, path = case.changes, await copy(case)
    drafted = await changes.draft(path, writes(path, {"app.py": "A = 2\n"}))
    other = await copy(case, "other")
    await changes.apply(other, drafted.diff)
    await changes.commit(other, "A = 2")
    await changes.apply(other, drafted.diff, three_way=True)
    assert await changes.commit(other, "again") is None
