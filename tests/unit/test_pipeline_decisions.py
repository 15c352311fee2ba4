"""Pure decisions of the pipeline: when the merger acts, what counts as a regression."""

from __future__ import annotations

import pytest

from shared.events import (
    ChangesReviewed,
    LlmCallRecorded,
    MergeCompleted,
    PipelineRequested,
    TestGroupResult,
    TestsCompleted,
    make_event,
)
from shared.policy.run import merge_is_due, regressed, replay_answers, run_context

pytestmark = pytest.mark.unit


def _stored(payload, position, stream="run-1"):
    return make_event(payload, stream).model_copy(update={"global_position": position})


def test_merger_acts_only_on_the_later_of_review_and_tests():
    req = _stored(PipelineRequested(repo="/r"), 1)
    review = _stored(ChangesReviewed(overall=8, passed=True), 5)
    tests = _stored(TestsCompleted(), 7)
    ctx = run_context("run-1", [req, review, tests])
    assert merge_is_due(ctx, tests)
    assert not merge_is_due(ctx, review)
    only_review = run_context("run-1", [req, review])
    assert not merge_is_due(only_review, review)
    done = run_context("run-1", [req, review, tests, _stored(MergeCompleted(pushed=True, branch="b", merged=True), 9)])
    assert not merge_is_due(done, tests)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ((5, 0, 0), (5, 0, 0), False),
        ((5, 0, 0), (4, 1, 0), True),
        ((5, 0, 0), (5, 0, 1), True),
        ((4, 1, 0), (5, 0, 0), False),
        ((5, 0, 0), (3, 0, 0), True),  # tests deleted: fewer passing
    ],
)
def test_regression(before, after, expected):
    def g(p, f, e):
        return TestGroupResult(group="own", total=p + f + e, passed=p, failed=f, errors=e)

    assert regressed(g(*before), g(*after)) is expected


def test_context_accounts_model_spend_and_replay_answers():
    calls = [
        _stored(LlmCallRecorded(purpose="review", model="m", prompt_hash="h1", prompt_tokens=10,
                                completion_tokens=5, cost_usd=0.01, response="A"), 2),
        _stored(LlmCallRecorded(purpose="review", model="m", prompt_hash="h2", error="429",
                                response=""), 3),
    ]
    ctx = run_context("run-1", [_stored(PipelineRequested(repo="/r"), 1), *calls])
    assert ctx.tokens_spent == 15 and ctx.cost_spent == pytest.approx(0.01)
    assert replay_answers(ctx.llm_calls) == {"h1": "A"}
