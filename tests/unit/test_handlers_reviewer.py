"""The reviewer's handler against in-memory fakes of its ports: no servers, no ruff (the fake
signals count findings from a script). It is fed what it reacts to: the tester's TestsCompleted."""

from __future__ import annotations

import pytest

from services.reviewer.handlers import on_tests_completed
from shared.events import TestGroupResult, TestsCompleted
from shared.ports.engine import ModelReview
from shared.ports.errors import StepError
from tests.support.fakes import FakeEngine, FakeSignals, fake_deps
from tests.support.runs import reviewable_run

pytestmark = pytest.mark.unit

REPO = {"app.py": "import os\nimport sys\n\n\ndef main():\n    return os.getcwd()\n"}


def unused_imports(files: dict[str, str]) -> dict[str, int]:
    """F401 as the script counts it: an `import x` whose `x.` appears nowhere else in app.py."""
    text = files["app.py"]
    unused = [line.split()[1] for line in text.splitlines()
              if line.startswith("import ") and f"{line.split()[1]}." not in text]
    return {"F401": len(unused)} if unused else {}


def deps_for(tmp_path, engine):
    return fake_deps(tmp_path, {"demo": REPO}, engine=engine, signals=FakeSignals(findings=unused_imports))


async def test_fewer_findings_pass_and_the_model_score_is_blended_in(tmp_path):
    engine = FakeEngine(name="llm", review_answer=ModelReview(overall=9.0, summary="tidy"))
    deps = deps_for(tmp_path, engine)
    fixed = REPO["app.py"].replace("import sys\n", "")
    event = await reviewable_run(deps, {"one": {"app.py": fixed}}, threshold=6.0)

    out = await on_tests_completed(event, deps)

    assert [e.type for e in out] == ["LlmCallRecorded", "ChangesReviewed"]
    review = out[-1].data
    assert review.signals["findings_before"] == {"F401": 1} and review.signals["findings_after"] == {}
    assert review.model_score == 9.0 and review.passed and not review.blockers
    assert "head_sha" not in engine.seen[-1][1]  # the model's prompt stays the same on a replay
    assert not deps.workspace.live


async def test_new_findings_block_the_merge_whatever_the_model_says(tmp_path):
    engine = FakeEngine(name="llm", review_answer=ModelReview(overall=10.0))
    deps = deps_for(tmp_path, engine)
    event = await reviewable_run(deps, {"one": {"app.py": "import json\n" + REPO["app.py"]}}, threshold=1.0)

    review = (await on_tests_completed(event, deps))[-1].data

    assert not review.passed
    assert review.blockers and "findings grew from 1 to 2" in review.blockers[0]


async def test_a_regressed_own_suite_blocks_the_merge(tmp_path):
    deps = deps_for(tmp_path, FakeEngine(name="rules"))
    before = TestGroupResult(group="own", total=2, passed=2)
    after = TestGroupResult(group="own", total=2, passed=1, failed=1)
    tests = TestsCompleted(own_before=before, own_after=after, regressed=True)
    event = await reviewable_run(deps, {"one": {"app.py": REPO["app.py"].replace("import sys\n", "")}}, tests=tests)

    review = (await on_tests_completed(event, deps))[-1].data

    assert not review.passed and review.blockers


async def test_a_rules_engine_score_is_not_blended(tmp_path):
    deps = deps_for(tmp_path, FakeEngine(name="rules"))
    event = await reviewable_run(deps, {"one": {"app.py": REPO["app.py"].replace("import sys\n", "")}})
    review = (await on_tests_completed(event, deps))[-1].data
    assert review.model_score is None and review.overall == review.signals["score"]


async def test_a_failing_engine_leaves_no_copy(tmp_path):
    engine = FakeEngine(name="llm")
    deps = deps_for(tmp_path, engine)
    event = await reviewable_run(deps, {"one": {"app.py": "x = 1\n"}})
    engine.fail = "review"
    with pytest.raises(StepError):
        await on_tests_completed(event, deps)
    assert not deps.workspace.live
