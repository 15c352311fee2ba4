"""Workspace against real git: mirrors, per-run working copies rebuilt from patches."""

from __future__ import annotations

import pytest

from shared.adapters.git import GitError, default_branch, git, head_sha, is_git_repo
from shared.adapters.workspace import Workspace, commit_all, format_patch, mirror_key
from shared.ports.errors import StepError
from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration


@pytest.fixture
def source(tmp_path):
    return make_git_repo(tmp_path / "src", {"app.py": "print('hello')\n", "README.md": "# demo\n"})


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "home")


def test_git_helpers_report_commands_and_identity(source, tmp_path):
    assert is_git_repo(source)
    assert not is_git_repo(tmp_path)
    assert default_branch(source) == "main"
    assert len(head_sha(source)) == 40
    with pytest.raises(GitError, match=r"rev-parse.*no-such-ref"):
        git(source, "rev-parse", "--verify", "no-such-ref")
    (source / "new.txt").write_text("x\n")
    sha = commit_all(source, "add new")
    assert git(source, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha) == (
        "Repo Pilot <repo-pilot@localhost>|Repo Pilot <repo-pilot@localhost>"
    )
    assert commit_all(source, "nothing") is None


async def test_materialize_local_path_and_file_url(ws, source):
    m = await ws.materialize(str(source))
    assert m.base_sha == head_sha(source)
    assert m.default_branch == "main"
    assert m.mirror == ws.home / "mirrors" / mirror_key(str(source))
    assert m.source == str(source)

    url = source.as_uri()
    m2 = await ws.materialize(url)
    assert m2.base_sha == m.base_sha and m2.mirror != m.mirror


async def test_materialize_fetches_into_existing_mirror(ws, source):
    first = await ws.materialize(str(source))
    (source / "app.py").write_text("print('changed')\n")
    new_sha = commit_all(source, "change")
    second = await ws.materialize(str(source))
    assert second.mirror == first.mirror
    assert second.base_sha == new_sha != first.base_sha


async def test_mirror_follows_a_changed_default_branch(ws, source):
    assert (await ws.materialize(str(source))).default_branch == "main"
    git(source, "branch", "-m", "main", "trunk")
    again = await ws.materialize(str(source))
    assert (again.default_branch, again.base_sha) == ("trunk", head_sha(source))


async def test_materialize_ref_by_branch_tag_and_sha(ws, source):
    base = head_sha(source)
    git(source, "tag", "v1")
    git(source, "checkout", "-q", "-b", "feature")
    (source / "f.py").write_text("x = 1\n")
    feature_sha = commit_all(source, "feature")
    git(source, "checkout", "-q", "main")
    assert (await ws.materialize(str(source), "feature")).base_sha == feature_sha
    assert (await ws.materialize(str(source), "v1")).base_sha == base
    assert (await ws.materialize(str(source), base[:10])).base_sha == base
    assert (await ws.materialize(str(source))).default_branch == "main"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp, src: str(tmp / "missing"), "does not exist"),
        (lambda tmp, src: str((tmp / "plain").mkdir() or tmp / "plain"), "Not a git repository"),
        (lambda tmp, src: str((src / "sub").mkdir() or src / "sub"), "not its root"),
        (lambda tmp, src: (tmp / "nowhere.git").as_uri(), "Could not fetch"),
    ],
)
async def test_materialize_bad_sources_are_step_errors_with_hints(ws, source, tmp_path, make, message):
    with pytest.raises(StepError, match=message) as info:
        await ws.materialize(make(tmp_path, source))
    assert info.value.hint


async def test_materialize_unknown_ref(ws, source):
    with pytest.raises(StepError, match="Unknown ref 'nope'") as info:
        await ws.materialize(str(source), "nope")
    assert "branch, tag or commit" in info.value.hint


async def _series(ws, source, run_id):
    """A run that makes two commits in its working copy; returns (base, shas, patches)."""
    m = await ws.materialize(str(source))
    wt = await ws.worktree(run_id, str(source), m.base_sha, branch=f"repo-pilot/{run_id}")
    (wt / "app.py").write_text("print('hello, world')\n")
    first = commit_all(wt, "Greet the world\n\nLonger body explaining why.")
    (wt / "pkg").mkdir()
    (wt / "pkg" / "__init__.py").write_text("")
    (wt / "README.md").unlink()
    second = commit_all(wt, "Add a package, drop the readme")
    return m.base_sha, [first, second], [format_patch(wt, first), format_patch(wt, second)]


async def test_worktree_rebuilds_the_same_series_from_patches(ws, source, tmp_path):
    base, shas, patches = await _series(ws, source, "run-a")

    # Another service, with its own home, rebuilds the copy from the events' data alone.
    other = Workspace(tmp_path / "other-home")
    wt = await other.worktree("run-a", str(source), base, patches, branch="repo-pilot/run-a")
    assert git(wt, "rev-parse", "--abbrev-ref", "HEAD") == "repo-pilot/run-a"
    assert git(wt, "rev-list", "--reverse", f"{base}..HEAD").split() == shas
    assert (wt / "app.py").read_text() == "print('hello, world')\n"
    assert not (wt / "README.md").exists()
    assert (
        git(wt, "log", "-1", "--format=%B", shas[0]).strip()
        == "Greet the world\n\nLonger body explaining why."
    )
    assert git(wt, "status", "--porcelain") == ""


async def test_worktree_is_idempotent_and_clean(ws, source):
    base, shas, patches = await _series(ws, source, "run-b")
    wt = await ws.worktree("run-b", str(source), base, patches)
    (wt / "junk.txt").write_text("left over\n")
    (wt / "app.py").write_text("broken\n")
    again = await ws.worktree("run-b", str(source), base, patches)
    assert again == wt
    assert git(wt, "status", "--porcelain", "--untracked-files=all") == ""
    assert head_sha(wt) == shas[-1]
    await ws.remove("run-b")
    assert not wt.exists()
    assert not list(wt.parent.glob("*.lock"))  # no lock file left behind per working copy
    await ws.remove("run-b")  # removing twice is fine


async def test_worktree_without_branch_is_detached_at_base(ws, source):
    m = await ws.materialize(str(source))
    wt = await ws.worktree("run-c", str(source), m.base_sha)
    assert head_sha(wt) == m.base_sha
    assert git(wt, "symbolic-ref", "-q", "HEAD", check=False) == ""


async def test_patch_that_does_not_apply_is_a_step_error(ws, source):
    base, _, patches = await _series(ws, source, "run-d")
    with pytest.raises(StepError, match="Patch 2 of the run does not apply"):
        await ws.worktree("run-e", str(source), base, [patches[1], patches[1]])


def test_run_ids_cannot_escape_the_home(ws):
    with pytest.raises(ValueError):
        ws.worktree_path("../evil")


async def test_working_copies_carry_the_repositorys_own_name(ws, tmp_path):
    from shared.engines.rules.facts import collect

    repo = make_git_repo(tmp_path / "my-scripts", {"requirements.txt": "requests\n", "tool.py": "print(1)\n"})
    m = await ws.materialize(str(repo))
    copy = await ws.worktree("run-01a2b3c4-9c07-799b-9b2a-df2ba362032c-imp5", str(repo), m.base_sha)
    assert copy.name == "my-scripts"
    facts = collect(copy)
    assert (facts.name, facts.language) == ("my-scripts", "python")
    await ws.remove("run-01a2b3c4-9c07-799b-9b2a-df2ba362032c-imp5")
    assert not copy.exists()
