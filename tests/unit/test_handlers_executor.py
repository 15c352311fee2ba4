"""The executor's handler against in-memory fakes of its ports: no servers."""

from __future__ import annotations

import pytest

from services.executor.handlers import on_improvements_suggested
from shared.events import ImprovementsSuggested
from shared.ports.errors import StepError
from tests.support.fakes import FakeEngine, fake_deps
from tests.support.runs import analyzed_run, idea

pytestmark = pytest.mark.unit

REPO = {"app.py": "A = 1\nB = 2\n"}


async def suggested_run(deps, ideas):
    events = await analyzed_run(deps, ImprovementsSuggested(improvements=ideas))
    return events[-1], events[1].data.base_sha


async def test_one_commit_per_improvement_and_a_reason_for_each_one_left_out(tmp_path):
    engine = FakeEngine(edits={
        "one": {"app.py": "A = 10\nB = 2\n"},
        "two": "cannot do it safely",
        "three": {"app.py": "A = 30\nB = 2\n"},  # the same line as `one`: conflicts once `one` is in
        "four": {},
        "five": {"new.py": "C = 3\n"},
    })
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=engine)
    ideas = [idea(n) for n in ("one", "two", "three", "four", "five")]
    event, base = await suggested_run(deps, ideas)

    out = await on_improvements_suggested(event, deps)

    outcome = {e.data.improvement_id: e for e in out if e.type in ("ChangeApplied", "ChangeRejected")}
    assert {k: e.type for k, e in outcome.items()} == {
        "one": "ChangeApplied", "two": "ChangeRejected", "three": "ChangeRejected",
        "four": "ChangeRejected", "five": "ChangeApplied"}
    assert outcome["two"].data.reason == "cannot do it safely"
    assert outcome["three"].data.reason.startswith("conflicts with an earlier improvement")
    assert outcome["four"].data.reason == "the engine made no change for this improvement"
    assert outcome["five"].data.files == ["new.py"]
    started = [e.data.step for e in out if e.type == "StepStarted"]
    assert started == [f"improvement:{i.id}" for i in ideas]
    [committed] = [e.data for e in out if e.type == "ChangesCommitted"]
    assert [p.improvement_id for p in committed.patches] == ["one", "five"]
    assert committed.base_sha == base and committed.head_sha == outcome["five"].data.commit_sha
    assert sum(e.type == "LlmCallRecorded" for e in out) == 5
    assert not deps.workspace.live

    # The patch series alone rebuilds the branch, commit for commit.
    rebuilt = await deps.workspace.worktree("check", "demo", base, [p.patch for p in committed.patches])
    assert (rebuilt / "app.py").read_text() == "A = 10\nB = 2\n" and (rebuilt / "new.py").exists()


async def test_a_change_an_earlier_improvement_already_made_is_rejected_not_a_crash(tmp_path):
    same = {"app.py": "A = 10\nB = 2\n"}
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=FakeEngine(edits={"one": same, "two": same}))
    event, _ = await suggested_run(deps, [idea("one"), idea("two")])

    out = await on_improvements_suggested(event, deps)

    outcome = {e.data.improvement_id: e for e in out if e.type in ("ChangeApplied", "ChangeRejected")}
    assert outcome["one"].type == "ChangeApplied"
    assert outcome["two"].type == "ChangeRejected"
    assert "already made by an earlier improvement" in outcome["two"].data.reason
    [committed] = [e.data for e in out if e.type == "ChangesCommitted"]
    assert [p.improvement_id for p in committed.patches] == ["one"]


async def test_a_failing_engine_leaves_no_scratch_copy(tmp_path):
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=FakeEngine(fail="implement"))
    event, _ = await suggested_run(deps, [idea("one"), idea("two")])
    with pytest.raises(StepError):
        await on_improvements_suggested(event, deps)
    assert len(deps.workspace.made) == 2 and not deps.workspace.live


async def test_each_improvement_is_stamped_when_its_own_draft_ended_not_when_the_phase_did(tmp_path):
    # Five drafts, four at a time: the fifth starts only once an earlier one has ended, so an outcome
    # stamped at its draft's end comes before the fifth's start. Stamped at the commit phase, every
    # outcome came after every start: each bead showed the whole phase's duration.
    ideas = [idea(n) for n in ("one", "two", "three", "four", "five")]
    engine = FakeEngine(edits={i.id: {f"{i.id}.py": "X = 1\n"} for i in ideas})
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=engine)
    event, _ = await suggested_run(deps, ideas)

    out = await on_improvements_suggested(event, deps)

    started = {e.data.step.removeprefix("improvement:"): e.occurred_at for e in out if e.type == "StepStarted"}
    ended = {e.data.improvement_id: e.occurred_at for e in out if e.type == "ChangeApplied"}
    assert set(ended) == set(started)
    assert all(started[i] <= ended[i] for i in ended)
    last_start = max(started.values())
    assert any(at <= last_start for at in ended.values())
    [committed] = [e for e in out if e.type == "ChangesCommitted"]
    assert all(at <= committed.occurred_at for at in ended.values())
