"""The Changes port: one contract suite, run against the real GitChanges (the project's own checks
in a real local sandbox) and the fake the handler unit tests use (checks scripted)."""

from __future__ import annotations

import pytest

from shared.adapters.changes import GitChanges
from shared.adapters.git import git
from shared.adapters.sandbox import LocalSandbox
from shared.ports.changes import Changes, PatchConflict
from shared.ports.engine import Implementation
from shared.ports.errors import ChangeRejectedError
from tests.conftest import make_git_repo
from tests.support.fakes import FakeChanges

FILES = {"app.py": "A = 1\n", ".gitignore": ".*\n!.gitignore\n"}


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration),
                        pytest.param("fake", marks=pytest.mark.unit)])
def changes(request) -> Changes:
    return GitChanges(LocalSandbox()) if request.param == "real" else FakeChanges()


def copy(tmp_path, name: str = "copy"):
    return make_git_repo(tmp_path / name, FILES)


def writes(path, files: dict[str, str]):
    async def implement() -> Implementation:
        for rel, content in files.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(content)
        return Implementation(files=sorted(files), summary="wrote")
    return implement


def test_implements_the_port(changes):
    assert isinstance(changes, Changes)


async def test_a_draft_is_the_change_against_head_and_applies_elsewhere(changes, tmp_path):
    path = copy(tmp_path)
    drafted = await changes.draft(path, writes(path, {"app.py": "A = 2\n", "lib/new.py": "B = 1\n"}))
    assert drafted.done.summary == "wrote" and "lib/new.py" in drafted.diff and "+A = 2" in drafted.diff

    other = copy(tmp_path, "other")
    changes.apply(other, drafted.diff, three_way=True)
    sha = changes.commit(other, "change app and add lib")
    assert sha == changes.head(other) and len(sha) == 40
    patch, files = changes.patch_of(other, sha)
    assert files == ["app.py", "lib/new.py"] and patch.startswith("From ")
    assert "Subject: [PATCH] change app and add lib" in patch


async def test_a_file_the_engine_names_is_in_the_draft_even_when_ignored(changes, tmp_path):
    path = copy(tmp_path)
    drafted = await changes.draft(path, writes(path, {".github/dependabot.yml": "version: 2\n"}))
    assert ".github/dependabot.yml" in drafted.diff


async def test_no_change_is_an_empty_draft_and_no_commit(changes, tmp_path):
    path = copy(tmp_path)
    drafted = await changes.draft(path, writes(path, {}))
    assert drafted.diff == ""
    assert changes.commit(path, "nothing") is None


async def test_a_rejection_by_the_engine_propagates(changes, tmp_path):
    path = copy(tmp_path)

    async def refuse() -> Implementation:
        raise ChangeRejectedError("not safe")

    with pytest.raises(ChangeRejectedError, match="not safe"):
        await changes.draft(path, refuse)


async def test_a_conflicting_patch_raises_and_leaves_the_copy_clean(changes, tmp_path):
    path = copy(tmp_path)
    drafted = await changes.draft(path, writes(path, {"app.py": "A = 2\n"}))
    other = copy(tmp_path, "other")
    (other / "app.py").write_text("A = 3\n")
    changes.commit(other, "A = 3")
    for three_way in (True, False):
        with pytest.raises(PatchConflict) as caught:
            changes.apply(other, drafted.diff, three_way=three_way)
        assert caught.value.stderr
        assert git(other, "status", "--porcelain") == "" and (other / "app.py").read_text() == "A = 3\n"
