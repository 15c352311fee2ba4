"""One repository behind the Workspace and Changes ports, real or fake, for the contract suites
that run against both: the real Workspace and GitChanges over a real git repository, or the
in-memory fakes (tests/support/fake_repos.py). `branch` and `subjects` look inside a copy the
way each keeps it (the ports do not say), for assertions only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.adapters.changes import GitChanges
from shared.adapters.git import git
from shared.adapters.sandbox import LocalSandbox
from shared.adapters.workspace import Workspace
from shared.ports.changes import Changes
from shared.ports.workspace import Workspace as WorkspacePort
from tests.conftest import make_git_repo
from tests.support.fake_repos import FakeChanges, FakeWorkspace, Repos


@dataclass
class RepoCase:
    workspace: WorkspacePort
    changes: Changes
    source: str
    missing: str  # a source that does not exist
    branch: Callable[[Path], str | None]  # the branch a copy has checked out
    subjects: Callable[[Path, str], list[str]]  # commit subjects from the copy's HEAD back to `base`, newest first
    repos: Repos | None = None  # the fake's commits


def repo_case(kind: str, tmp_path: Path, files: dict[str, str]) -> RepoCase:
    if kind == "real":
        repo = make_git_repo(tmp_path / "repo", files)
        return RepoCase(
            Workspace(tmp_path / "home"), GitChanges(LocalSandbox()), str(repo), str(tmp_path / "missing"),
            branch=lambda path: git(path, "symbolic-ref", "--short", "HEAD", check=False) or None,
            subjects=lambda path, base: git(path, "log", "--format=%s", f"{base}..HEAD").splitlines(),
        )
    repos = Repos()

    def subjects(path: Path, base: str) -> list[str]:
        out, sha = [], repos.copy_of(path).head
        while sha != base:
            commit = repos.commits[sha]
            out.append(commit.message.splitlines()[0])
            sha = commit.parent
        return out

    return RepoCase(
        FakeWorkspace(tmp_path / "fake", {"demo": files}, repos), FakeChanges(repos), "demo", "missing",
        branch=lambda path: repos.copy_of(path).branch, subjects=subjects, repos=repos,
    )
