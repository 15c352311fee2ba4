"""The forges against real git repositories, beyond the port's contract
(tests/contract/test_forge_contract.py): the local forge's bookkeeping, refusals and conflicts,
two hosts, GitHub's errors."""

from __future__ import annotations

import json

import pytest

from shared.adapters.forge import LocalForge, RemoteForge, make_forge
from shared.adapters.forge_github import GitHubForge, github_repo_of
from shared.adapters.git import git, head_sha
from shared.adapters.workspace import commit_all
from shared.ports.errors import StepError
from tests.conftest import make_git_repo
from tests.support.forges import BRANCH, TOKEN, work_copy
from tests.support.github_stub import GitHubStub

pytestmark = pytest.mark.integration


# -- local forge ---------------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path):
    target = make_git_repo(tmp_path / "target", {"app.py": "print('hi')\n"})
    return target, LocalForge(target), work_copy(target, tmp_path / "work")


async def test_local_requests_are_recorded_in_the_target_git_dir(local):
    target, forge, work = local
    await forge.publish(work, BRANCH)
    request = await forge.open_request(work, BRANCH, "Title", "Body")
    book = json.loads((target / ".git" / "repo-pilot" / "requests.json").read_text())
    assert [(r["id"], r["branch"], r["base"], r["body"]) for r in book["requests"]] == [
        (request.id, BRANCH, "main", "Body")
    ]
    assert git(target, "status", "--porcelain") == ""


async def test_local_dirty_target_is_refused_then_merges_once_clean(local):
    target, forge, work = local
    await forge.publish(work, BRANCH)
    request = await forge.open_request(work, BRANCH, "Title", "Body")
    (target / "app.py").write_text("print('my uncommitted work')\n")
    with pytest.raises(StepError, match="uncommitted changes") as info:
        await forge.merge(request)
    assert "Commit or stash" in info.value.hint
    assert (target / "app.py").read_text() == "print('my uncommitted work')\n"
    assert int(git(target, "rev-list", "--merges", "--count", "main")) == 0

    git(target, "checkout", "--quiet", "--", "app.py")
    sha = await forge.merge(request)
    assert head_sha(target) == sha
    assert (target / "feature.py").exists()  # merged in the checked-out working tree


async def test_local_merge_when_default_branch_is_not_checked_out(local):
    target, forge, work = local
    await forge.publish(work, BRANCH)
    request = await forge.open_request(work, BRANCH, "Title", "Body")
    git(target, "checkout", "--quiet", "-b", "someone-elses-work")
    (target / "scratch.txt").write_text("untracked, untouched\n")
    sha = await forge.merge(request)
    assert head_sha(target, "refs/heads/main") == sha
    assert git(target, "symbolic-ref", "--short", "HEAD") == "someone-elses-work"
    assert not (target / "feature.py").exists()  # the user's checkout was not touched
    assert git(target, "worktree", "list").count("\n") == 0  # the temporary worktree is gone
    assert await forge.merge(request) == sha


async def test_local_merge_recognises_a_merge_it_did_not_record(local, tmp_path):
    target, forge, work = local
    await forge.publish(work, BRANCH)
    request = await forge.open_request(work, BRANCH, "Title", "Body")
    sha = await forge.merge(request)
    # A crash after merging but before writing the book: a new forge on a wiped book merges nothing.
    (target / ".git" / "repo-pilot" / "requests.json").unlink()
    fresh = LocalForge(target)
    again = await fresh.merge(await fresh.open_request(work, BRANCH, "Title", "Body"))
    assert again == sha
    assert int(git(target, "rev-list", "--merges", "--count", "main")) == 1


async def test_local_open_before_publish_and_conflicts_are_step_errors(local):
    target, forge, work = local
    with pytest.raises(StepError, match="not on the forge"):
        await forge.open_request(work, BRANCH, "Title", "Body")
    (work / "app.py").write_text("print('branch')\n")
    commit_all(work, "Change app on the branch")
    await forge.publish(work, BRANCH)
    (target / "app.py").write_text("print('main moved')\n")
    commit_all(target, "Change app on main")
    request = await forge.open_request(work, BRANCH, "Title", "Body")
    with pytest.raises(StepError, match="does not merge cleanly"):
        await forge.merge(request)
    assert git(target, "status", "--porcelain") == ""
    assert (await forge.find_request(BRANCH)).state == "open"


# -- remote and github specifics -----------------------------------------------------------------


async def test_remote_forges_on_two_hosts_merge_once(tmp_path):
    target = make_git_repo(tmp_path / "target", {"app.py": "print('hi')\n"})
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(target), str(bare))
    work = work_copy(bare, tmp_path / "work")
    a = RemoteForge(str(bare), state_dir=tmp_path / "host-a")
    b = RemoteForge(str(bare), state_dir=tmp_path / "host-b")
    await a.publish(work, BRANCH)
    assert await b.publish(work, BRANCH) is False
    sha = await a.merge(await a.open_request(work, BRANCH, "T", "B"))
    assert await b.merge(await b.open_request(work, BRANCH, "T", "B")) == sha
    assert int(git(bare, "rev-list", "--merges", "--count", "main")) == 1


async def test_github_bad_token_is_a_step_error_with_a_hint(tmp_path):
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", str(bare))
    with GitHubStub(bare, "octo/demo", token=TOKEN) as stub:
        forge = GitHubForge("wrong-token", "octo/demo", api_url=stub.api_url, push_url=str(bare))
        with pytest.raises(StepError, match="401") as info:
            await forge.find_request(BRANCH)
        assert "GITHUB_TOKEN" in info.value.hint


async def test_github_push_failure_does_not_leak_the_token(tmp_path):
    work = work_copy(make_git_repo(tmp_path / "target", {"a.py": ""}), tmp_path / "work")
    secret = "ghs_supersecret123"
    forge = GitHubForge(
        secret, "octo/demo", push_url=f"file://x-access-token:{secret}@{tmp_path}/missing.git"
    )
    with pytest.raises(StepError) as info:
        await forge.publish(work, BRANCH)
    assert secret not in str(info.value)


def test_make_forge_and_github_repo_of(tmp_path):
    class S:
        home = tmp_path / "home"
        github_token = "t"

    target = make_git_repo(tmp_path / "t", {"a.py": ""})
    assert make_forge("local", target, S).name == "local"
    assert make_forge("remote", str(target), S).name == "remote"
    assert github_repo_of("https://github.com/octo/demo.git") == "octo/demo"
    assert github_repo_of("git@github.com:octo/demo") == "octo/demo"
    git(target, "remote", "add", "origin", "https://github.com/octo/from-origin.git")
    assert make_forge("github", target, S).repo == "octo/from-origin"
    S.github_token = None
    with pytest.raises(StepError, match="token"):
        make_forge("github", target, S)
    with pytest.raises(ValueError):
        make_forge("gitlab", target, S)
