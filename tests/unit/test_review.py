"""The combined review and the merge gate: signals decide blockers, a model can only blend in."""

from __future__ import annotations

import pytest

from shared.events import run as run_events
from shared.events.run import ChangesReviewed
from shared.policy.review import combine_review, merge_gate, own_tests_regressed, signal_assessment
from shared.ports.engine import REVIEW_DIMENSIONS, ModelReview

pytestmark = pytest.mark.unit


def clean_fix_signals() -> dict:
    return {
        "findings_before": {"B009": 2, "UP006": 3, "F401": 1},
        "findings_after": {"UP006": 0},
        "parse_failures": [],
        "diff": {"files": 3, "added": 12, "removed": 9},
    }


def suite_results(own_before=(5, 0), own_after=(5, 0), generated=((3, 0, 0),)) -> dict:
    def group(name, passed, failed, errors=0):
        return {
            "group": name,
            "total": passed + failed + errors,
            "passed": passed,
            "failed": failed,
            "errors": errors,
        }

    return {
        "own_before": group("own", *own_before),
        "own_after": group("own", *own_after),
        "groups": [group("smoke", *g) for g in generated],
        "regressed": False,
    }


def model(overall: float, **kw) -> ModelReview:
    return ModelReview(overall=overall, scores={d: overall for d in REVIEW_DIMENSIONS}, **kw)


def test_a_model_saying_10_on_a_change_that_breaks_the_tests_does_not_pass():
    tests = suite_results(own_before=(5, 0), own_after=(3, 2))
    verdict = combine_review(clean_fix_signals(), model(10.0, summary="perfect"), threshold=7.0, tests=tests)

    assert verdict["passed"] is False
    assert verdict["model_score"] == 10.0
    assert any("own tests regressed" in b for b in verdict["blockers"])
    assert "blocked" in verdict["summary"]
    ChangesReviewed(**verdict)  # exactly the payload's fields


def test_a_model_saying_3_on_a_clean_fix_is_reported_with_both_parts_and_flagged():
    signals = clean_fix_signals()
    verdict = combine_review(
        signals, model(3.0, issues=["I do not like it"]), threshold=7.0, tests=suite_results()
    )

    alone = signal_assessment(signals, suite_results())
    assert alone["score"] >= 7.0 and not alone["blockers"]
    assert verdict["signals"]["score"] == alone["score"]
    assert verdict["model_score"] == 3.0
    assert verdict["flagged"] and "model says 3.0" in verdict["flagged"][0]
    assert verdict["overall"] == pytest.approx(round(0.5 * alone["score"] + 1.5, 1))
    assert "I do not like it" in verdict["issues"]
    assert verdict["blockers"] == []
    ChangesReviewed(**verdict)


def test_without_a_model_the_overall_is_the_signal_score():
    verdict = combine_review(clean_fix_signals(), None, threshold=7.0)
    assert verdict["overall"] == verdict["signals"]["score"]
    assert verdict["model_score"] is None and verdict["flagged"] == []
    assert set(verdict["scores"]) == set(REVIEW_DIMENSIONS)
    assert verdict["passed"] is (verdict["overall"] >= 7.0)


def test_findings_that_grew_block_even_a_high_score():
    signals = {
        **clean_fix_signals(),
        "findings_before": {"S105": 1},
        "findings_after": {"S105": 1, "S602": 2},
    }
    verdict = combine_review(signals, model(10.0), threshold=1.0)
    assert verdict["passed"] is False
    assert any("findings grew" in b and "S602 +2" in b for b in verdict["blockers"])


def test_a_file_that_does_not_parse_blocks_and_scores_correctness_1():
    signals = {**clean_fix_signals(), "parse_failures": ["pkg/a.py:3: invalid syntax"]}
    verdict = combine_review(signals, None, threshold=1.0)
    assert verdict["passed"] is False
    assert verdict["scores"]["correctness"] == 1.0
    assert any("do not parse" in b for b in verdict["blockers"])


def test_a_close_model_is_not_flagged_and_a_higher_threshold_fails():
    verdict = combine_review(clean_fix_signals(), model(8.0), threshold=9.5)
    assert verdict["flagged"] == []
    assert verdict["passed"] is False and verdict["blockers"] == []
    assert "below threshold" in verdict["summary"]


def test_an_empty_change_scores_low_on_scope():
    signals = {"findings_before": {}, "findings_after": {}, "parse_failures": [], "diff": {"files": 0}}
    assessment = signal_assessment(signals)
    assert assessment["scores"]["scope"] == 1.0
    assert "the change is empty" in assessment["issues"]


def test_own_tests_regressed_compares_failures_and_passes():
    assert own_tests_regressed(suite_results()) is None
    assert "regressed" in own_tests_regressed(suite_results(own_after=(5, 1)))
    assert "regressed" in own_tests_regressed(suite_results(own_after=(4, 0)))
    assert own_tests_regressed(suite_results(own_before=(3, 2), own_after=(5, 0))) is None  # a fix
    assert own_tests_regressed(None) is None


def passed_review(**overrides) -> ChangesReviewed:
    return ChangesReviewed(**{**combine_review(clean_fix_signals(), None, threshold=5.0), **overrides})


def test_merge_gate_merges_a_passed_review_with_green_tests():
    ok, why = merge_gate(passed_review(), run_events.TestsCompleted(**suite_results()))
    assert ok, why


def test_merge_gate_refuses_a_review_that_did_not_pass():
    ok, why = merge_gate(passed_review(passed=False, blockers=["findings grew from 1 to 3"]), suite_results())
    assert not ok and "findings grew" in why


def test_merge_gate_refuses_own_tests_that_regressed_even_when_review_passed():
    ok, why = merge_gate(passed_review(), suite_results(own_after=(4, 1)))
    assert not ok and "regressed" in why


def test_merge_gate_refuses_generated_tests_that_did_not_even_run():
    ok, why = merge_gate(passed_review(), suite_results(generated=((0, 0, 1),)))
    assert not ok and "did not run" in why and "smoke" in why


def test_merge_gate_lets_a_failing_smoke_group_through_to_the_score():
    # The smoke group is never committed: when it fails it lowers the score; a failing group of the
    # change (which would be committed) blocks (test_rules_fixes_decisions).
    ok, _ = merge_gate(passed_review(), suite_results(generated=((2, 1, 0),)))
    assert ok
    assert (
        "generated tests fail in group smoke"
        in signal_assessment(clean_fix_signals(), suite_results(generated=((2, 1, 0),)))["issues"]
    )


def test_a_new_security_finding_blocks_even_when_the_total_falls():
    signals = {**clean_fix_signals(), "findings_before": {"UP006": 5}, "findings_after": {"S602": 1}}
    verdict = combine_review(signals, None, threshold=1.0)
    assert verdict["passed"] is False
    assert verdict["blockers"] == ["security findings grew (S602 +1) while the total fell from 5 to 1"]


def test_shell_true_replaced_by_a_plain_subprocess_call_is_not_a_new_security_finding():
    signals = {**clean_fix_signals(), "findings_before": {"S602": 1}, "findings_after": {"S603": 1}}
    assert combine_review(signals, None, threshold=1.0)["blockers"] == []
    # ...but a milder finding beyond the ones it replaced still counts
    signals = {**signals, "findings_after": {"S603": 2}}
    assert combine_review(signals, None, threshold=1.0)["blockers"] == ["findings grew from 1 to 2 (S603 +2)"]
