"""Runs brought to a given step inside in-memory fakes, for the handler unit tests."""

from __future__ import annotations

from shared.events import (
    Envelope,
    Improvement,
    ImprovementsSuggested,
    PipelineRequested,
    RepoAnalyzed,
    make_event,
    new_run_stream,
)
from shared.ports.deps import Deps
from tests.support.fakes import given


def idea(n: str, category: str = "features", files: tuple[str, ...] = ("app.py",)) -> Improvement:
    return Improvement(id=n, category=category, title=f"change {n}", rationale="because", files=list(files))


async def analyzed_run(deps: Deps, *more, repo: str = "demo", **request) -> list[Envelope]:
    """PipelineRequested (with `request`), RepoAnalyzed at the repository's head, then `more`."""
    base = (await deps.workspace.materialize(repo)).base_sha
    return await given(deps.store, new_run_stream(), PipelineRequested(repo=repo, **request), RepoAnalyzed(
        base_sha=base, default_branch="main", repo_path=repo, specification="S", graph="G",
        architecture="A", stats={"files": 1}), *more)


async def committed_run(deps: Deps, edits: dict[str, dict[str, str]], **request) -> Envelope:
    """A run whose executor (the real handler, with the fake engine making `edits`) committed its
    changes; returns the stored ChangesCommitted event."""
    from services.executor.handlers import on_improvements_suggested

    engine = deps.make_engine(None, [])  # the fakes' factory hands out one scripted engine
    engine.edits = edits
    events = await analyzed_run(deps, ImprovementsSuggested(improvements=[idea(n) for n in edits]), **request)
    stored = await deps.store.append(events[-1].stream_id, await on_improvements_suggested(events[-1], deps))
    engine.drain_calls()
    engine.seen.clear()
    return next(e for e in stored if e.type == "ChangesCommitted")


async def reviewable_run(deps: Deps, edits: dict[str, dict[str, str]], tests=None, **request) -> Envelope:
    """`committed_run`, then the tester's TestsCompleted (`tests`, default: no groups, the own
    suite 1 passed before and after) stored; returns that event, what the reviewer reacts to."""
    from shared.events import TestGroupResult, TestsCompleted

    committed = await committed_run(deps, edits, **request)
    own = TestGroupResult(group="own", total=1, passed=1)
    tests = tests or TestsCompleted(own_before=own, own_after=own)
    [stored] = await deps.store.append(committed.stream_id, [make_event(tests, committed.stream_id, cause=committed)])
    return stored
