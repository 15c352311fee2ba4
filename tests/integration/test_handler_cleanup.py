"""A handler that fails leaves no working copy (nor its lock file) under REPO_PILOT_HOME: the
real Workspace, changes and signals over a real git repository, the other ports faked, each
handler made to fail."""

from __future__ import annotations

import dataclasses

import pytest

from services.analyzer.handlers import on_pipeline_requested
from services.executor.handlers import on_improvements_suggested
from services.merger.handlers import on_changes_reviewed
from services.reviewer.handlers import on_tests_completed as review
from services.suggester.handlers import on_repo_analyzed
from services.tester.handlers import on_changes_committed as run_tests
from shared.adapters.changes import GitChanges
from shared.adapters.sandbox import LocalSandbox
from shared.adapters.signals import StaticSignals
from shared.adapters.workspace import Workspace
from shared.events import ChangesReviewed, ImprovementsSuggested, TestsCompleted, make_event
from shared.ports.errors import StepError
from tests.conftest import make_git_repo
from tests.support.fakes import FakeEngine, FakeForge, FakeSandbox, fake_deps
from tests.support.runs import analyzed_run, committed_run, idea

pytestmark = pytest.mark.integration


class RefusingForge(FakeForge):
    async def publish(self, repo, branch):
        raise StepError("the forge refuses pushes")


async def requested(deps, repo):
    return (await analyzed_run(deps, repo=repo))[0]


async def analyzed(deps, repo):
    return (await analyzed_run(deps, repo=repo))[-1]


async def suggested(deps, repo):
    return (await analyzed_run(deps, ImprovementsSuggested(improvements=[idea("a"), idea("b")]), repo=repo))[-1]


async def committed(deps, repo):
    return await committed_run(deps, {"a": {"app.py": "A = 2\n"}}, repo=repo)


async def reviewed_and_tested(deps, repo):
    c = await committed(deps, repo)
    payloads = (TestsCompleted(), ChangesReviewed(overall=9, passed=True))
    return (await deps.store.append(c.stream_id, [make_event(p, c.stream_id, cause=c) for p in payloads]))[-1]


CASES = {
    "analyzer": (requested, on_pipeline_requested, "analyze"),
    "suggester": (analyzed, on_repo_analyzed, "suggest"),
    "executor": (suggested, on_improvements_suggested, "implement"),
    "reviewer": (committed, review, "review"),
    "tester": (committed, run_tests, "write_tests"),
    "merger": (reviewed_and_tested, on_changes_reviewed, None),
}


@pytest.mark.parametrize("service", sorted(CASES))
async def test_a_failing_handler_leaves_no_working_copy(service, tmp_path):
    prepare, handler, failing_step = CASES[service]
    repo = make_git_repo(tmp_path / "repo", {"app.py": "A = 1\n"})
    home = tmp_path / "home"
    engine = FakeEngine(name="llm")
    deps = dataclasses.replace(
        fake_deps(tmp_path, {}, engine=engine, forge=RefusingForge(), sandbox=FakeSandbox(lambda cwd, cmd: (1, 0))),
        workspace=Workspace(home), changes=GitChanges(LocalSandbox()), signals=StaticSignals(),
    )
    event = await prepare(deps, str(repo))
    engine.fail = failing_step

    with pytest.raises(StepError):
        await handler(event, deps)

    assert list((home / "worktrees").iterdir()) == []
    assert (home / "mirrors").is_dir()  # the mirror is a cache and stays
