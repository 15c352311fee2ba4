"""The Forge port: one contract, run against every forge and the fake the handler unit tests use.

LocalForge merges inside a real target repository; RemoteForge pushes to a real bare
repository; GitHubForge talks real HTTP to tests/support/github_stub.py (a local stand-in,
since GitHub is out of reach here) and pushes to a real bare repository. What a forge does to
git history (a --no-ff merge on main) is checked where there is history: every real forge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.adapters.forge import LocalForge, RemoteForge
from shared.adapters.forge_github import GitHubForge
from shared.adapters.git import git, head_sha
from shared.adapters.workspace import commit_all
from shared.ports.forge import Forge
from tests.conftest import make_git_repo
from tests.support.fakes import FakeForge
from tests.support.forges import BRANCH, TOKEN, work_copy
from tests.support.github_stub import GitHubStub

@dataclass
class Setup:
    forge: object
    work: Path  # the run's working copy, with BRANCH checked out
    merged_into: Path | None  # where the default branch lives (target repo or bare remote); None: the fake

    def merges(self) -> int:
        if self.merged_into is None:
            return len(self.forge.merges)
        return int(git(self.merged_into, "rev-list", "--merges", "--count", "refs/heads/main"))

    def file_on_main(self, name: str) -> str | None:
        return git(self.merged_into, "show", f"refs/heads/main:{name}", check=False) or None


@pytest.fixture(params=[pytest.param("fake", marks=pytest.mark.unit),
                        pytest.param("local", marks=pytest.mark.integration),
                        pytest.param("remote", marks=pytest.mark.integration),
                        pytest.param("github", marks=pytest.mark.integration)])
def setup(request, tmp_path):
    target = make_git_repo(tmp_path / "target", {"app.py": "print('hi')\n"})
    if request.param == "fake":
        yield Setup(FakeForge(), work_copy(target, tmp_path / "work"), None)
        return
    if request.param == "local":
        yield Setup(LocalForge(target), work_copy(target, tmp_path / "work"), target)
        return
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(target), str(bare))
    work = work_copy(bare, tmp_path / "work")
    if request.param == "remote":
        yield Setup(RemoteForge(bare.as_uri(), state_dir=tmp_path / "state"), work, bare)
        return
    with GitHubStub(bare, "octo/demo", token=TOKEN) as stub:
        forge = GitHubForge(TOKEN, "octo/demo", api_url=stub.api_url, push_url=str(bare))
        yield Setup(forge, work, bare)


# -- the contract ------------------------------------------------------------------------------


def test_implements_the_port(setup):
    assert isinstance(setup.forge, Forge)


async def test_publish_twice_pushes_once(setup):
    assert await setup.forge.publish(setup.work, BRANCH) is True
    assert await setup.forge.publish(setup.work, BRANCH) is False
    if setup.merged_into is not None:
        assert git(setup.merged_into, "rev-parse", f"refs/heads/{BRANCH}") == head_sha(setup.work)
    (setup.work / "more.py").write_text("x = 1\n")
    commit_all(setup.work, "More")
    assert await setup.forge.publish(setup.work, BRANCH) is True


async def test_open_twice_returns_the_same_request(setup):
    assert await setup.forge.find_request(BRANCH) is None
    await setup.forge.publish(setup.work, BRANCH)
    first = await setup.forge.open_request(setup.work, BRANCH, "Improve things", "Because.")
    second = await setup.forge.open_request(setup.work, BRANCH, "Improve things", "Because.")
    assert first == second
    assert (first.state, first.branch, first.merge_sha) == ("open", BRANCH, None)
    assert first.url
    assert await setup.forge.find_request(BRANCH) == first
    assert await setup.forge.find_request("repo-pilot/other") is None


async def test_merge_twice_merges_once(setup):
    await setup.forge.publish(setup.work, BRANCH)
    request = await setup.forge.open_request(setup.work, BRANCH, "Improve things", "Because.")
    before = setup.merges()
    sha = await setup.forge.merge(request)
    again = await setup.forge.merge(request)
    assert sha == again
    assert setup.merges() == before + 1
    if setup.merged_into is not None:
        assert head_sha(setup.merged_into, "refs/heads/main") == sha
        parents = git(setup.merged_into, "rev-list", "--parents", "-n", "1", sha).split()[1:]
        assert parents[1] == head_sha(setup.work)  # --no-ff: the branch tip is the second parent
        assert "return 42" in setup.file_on_main("feature.py")

    reopened = await setup.forge.open_request(setup.work, BRANCH, "Improve things", "Because.")
    assert (reopened.id, reopened.state, reopened.merge_sha) == (request.id, "merged", sha)
    assert (await setup.forge.find_request(BRANCH)).state == "merged"
