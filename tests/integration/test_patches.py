"""Patches byte for byte: the executor's diffs reach the run branch exactly as git wrote them.

A diff whose last hunk ends in a blank context line (a line holding one space, common between
Python functions) used to lose that line to a stripped stdout and was rejected as a "conflict".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.executor.handlers import on_improvements_suggested
from shared.policy.series import rejection_reason
from shared.adapters.git import git, git_apply_patch, git_patch
from shared.adapters.workspace import Workspace, commit_all, format_patch
from shared.app.bootstrap import bootstrap
from shared.events import (
    ChangeApplied,
    ChangeRejected,
    ChangesCommitted,
    Improvement,
    ImprovementsSuggested,
    PipelineRequested,
    RepoAnalyzed,
    make_event,
    new_run_stream,
)
from shared.ports.engine import Implementation
from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration

SOURCE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


class EditingEngine:
    """An engine whose implement() writes a fixed edit per improvement (what is under test is the
    executor's handling of the resulting diff, not the engine)."""

    def __init__(self, edits: dict[str, tuple[str, bytes]]):
        self.edits = edits

    async def implement(self, repo: Path, improvement: Improvement) -> Implementation:
        rel, content = self.edits[improvement.id]
        (Path(repo) / rel).parent.mkdir(parents=True, exist_ok=True)
        (Path(repo) / rel).write_bytes(content)
        return Implementation(files=[rel], summary="edited")

    def drain_calls(self) -> list:
        return []


def _blank_context_diff_repo(tmp_path) -> tuple[Path, bytes]:
    repo = make_git_repo(tmp_path / "src", {"calc.py": SOURCE})
    # A docstring in add(): the hunk's trailing context is the blank lines before sub().
    edited = SOURCE.replace("def add(a, b):\n", 'def add(a, b):\n    """Sum."""\n').encode()
    return repo, edited


def test_diff_ending_in_blank_context_line_applies_and_commits(tmp_path):
    repo, edited = _blank_context_diff_repo(tmp_path)
    (repo / "calc.py").write_bytes(edited)
    git(repo, "add", "--all")
    diff = git_patch(repo, "diff", "--cached", "--binary", "HEAD")
    assert diff.endswith(" \n"), "the fixture must end in a blank context line"
    # What the old stripped helper produced does not apply: the test can fail.
    assert git(repo, "diff", "--cached", "--binary", "HEAD") + "\n" != diff
    git(repo, "reset", "--hard", "-q")
    git_apply_patch(repo, "apply", "--3way", "--whitespace=nowarn", patch=diff)
    sha = commit_all(repo, "docstring")
    assert (repo / "calc.py").read_bytes() == edited
    assert format_patch(repo, sha).endswith("\n")


def test_non_utf8_file_travels_exactly(tmp_path):
    repo = make_git_repo(tmp_path / "src", {"latin.txt": "caf\n"})
    content = b"caf\xe9\nna\xefve\n"  # Latin-1: not UTF-8
    (repo / "latin.txt").write_bytes(content)
    git(repo, "add", "--all")
    diff = git_patch(repo, "diff", "--cached", "--binary", "HEAD")
    assert "\ufffd" not in diff
    git(repo, "reset", "--hard", "-q")
    git_apply_patch(repo, "apply", "--whitespace=nowarn", patch=diff)
    assert (repo / "latin.txt").read_bytes() == content


def test_rejection_reason_tells_conflict_from_broken_patch():
    assert rejection_reason("error: corrupt patch at line 15").startswith("its patch could not be applied")
    assert rejection_reason("error: patch failed: calc.py:1\nerror: calc.py: patch does not apply").startswith(
        "conflicts with an earlier improvement")


async def test_executor_commits_both_changes_whose_diffs_end_in_blank_context(tmp_path, settings, store):
    repo, docstring = _blank_context_diff_repo(tmp_path)
    # Two improvements, the second a function added after add(): both diffs end in blank context.
    added = SOURCE.replace("\n\ndef sub", '\n\ndef mul(a, b):\n    return a * b\n\n\ndef sub').encode()
    improvements = [
        Improvement(id="doc", category="compliance", title="docstring", rationale="r", files=["calc.py"]),
        Improvement(id="mul", category="features", title="mul", rationale="r", files=["calc.py"]),
    ]
    engine = EngineHolder(EditingEngine({"doc": ("calc.py", docstring), "mul": ("calc.py", added)}))
    deps = bootstrap(settings, store, make_engine=engine)
    ws: Workspace = deps.workspace
    m = await ws.materialize(str(repo))
    stream = new_run_stream()
    request = make_event(PipelineRequested(repo=str(repo), engine="rules"), stream)
    analyzed = make_event(RepoAnalyzed(base_sha=m.base_sha, default_branch="main", repo_path=str(repo),
                                       specification="", graph="", architecture=""), stream, cause=request)
    suggested = make_event(ImprovementsSuggested(improvements=improvements), stream, cause=analyzed)
    await store.append(stream, [request, analyzed, suggested], 0)

    out = await on_improvements_suggested(suggested, deps)

    rejected = [e.data for e in out if isinstance(e.data, ChangeRejected)]
    applied = [e.data for e in out if isinstance(e.data, ChangeApplied)]
    assert [a.improvement_id for a in applied] == ["doc", "mul"], rejected
    both = added.decode().replace("def add(a, b):\n", 'def add(a, b):\n    """Sum."""\n').encode()
    committed = next(e.data for e in out if isinstance(e.data, ChangesCommitted))
    # The series rebuilds the same commits from the recorded patches alone.
    copy = await ws.worktree("rebuild", str(repo), m.base_sha, [p.patch for p in committed.patches])
    assert git(copy, "rev-parse", "HEAD") == committed.head_sha
    assert (copy / "calc.py").read_bytes() == both


class EngineHolder:
    def __init__(self, engine):
        self.engine = engine

    def __call__(self, ctx, previous):
        return self.engine


async def test_a_file_the_engine_writes_is_committed_even_when_gitignored(tmp_path, settings, store):
    repo = make_git_repo(tmp_path / "src", {"calc.py": SOURCE, ".gitignore": ".*\n!.gitignore\n"})
    imp = Improvement(id="bot", category="integration", title="dependabot", rationale="r",
                      files=[".github/dependabot.yml"])
    content = b"version: 2\n"
    deps = bootstrap(settings, store, make_engine=EngineHolder(
        EditingEngine({"bot": (".github/dependabot.yml", content)})))
    m = await deps.workspace.materialize(str(repo))
    stream = new_run_stream()
    request = make_event(PipelineRequested(repo=str(repo), engine="rules"), stream)
    analyzed = make_event(RepoAnalyzed(base_sha=m.base_sha, default_branch="main", repo_path=str(repo),
                                       specification="", graph="", architecture=""), stream, cause=request)
    suggested = make_event(ImprovementsSuggested(improvements=[imp]), stream, cause=analyzed)
    await store.append(stream, [request, analyzed, suggested], 0)

    out = await on_improvements_suggested(suggested, deps)

    applied = [e.data for e in out if isinstance(e.data, ChangeApplied)]
    assert [a.files for a in applied] == [[".github/dependabot.yml"]], [e.data for e in out]
