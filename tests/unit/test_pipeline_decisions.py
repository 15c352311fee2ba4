"""Pure decisions of the pipeline: when the merger acts, what counts as a regression."""

from __future__ import annotations

import pytest

from shared.events import (
    LlmCallRecorded,
    PipelineRequested,
    TestGroupResult,
    make_event,
)
from shared.policy.run import regressed, replay_answers, run_context

pytestmark = pytest.mark.unit


def _stored(payload, position, stream="run-1"):
    return make_event(payload, stream).model_copy(update={"global_position": position})


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
