"""Scoring a change from objective signals, blending in a model's opinion, and the merge gate (pure).

The signal score never depends on a model. A model's score is blended in, flagged when it is far
from the signals, and can never lift a blocker: findings that grew, files that no longer parse,
or the repository's own tests regressing forbid an auto-merge whatever the model says.
"""

from __future__ import annotations

from statistics import fmean
from collections.abc import Mapping
from typing import Any

from shared.events.run import ChangesReviewed, TestGroupResult, TestsCompleted
from shared.ports.engine import REVIEW_DIMENSIONS, ModelReview

MODEL_WEIGHT = 0.5  # the model and the signals count equally when both exist
FLAG_DISTANCE = 3.0  # a model this far from the signals is reported as a disagreement
# ruff's flake8-bandit (S) and bugbear (B) rules, bandit's own tests, secrets found in the code
SECURITY_PREFIXES = ("S", "B", "bandit:", "secret:")


def is_security_finding(code: str) -> bool:
    """True for a finding code (`S105`, `bandit:B303`, `secret:github-token`) that is a security matter."""
    return code.startswith(SECURITY_PREFIXES)


def _clamp(x: float) -> float:
    return round(min(10.0, max(1.0, x)), 1)


def _failing(group: Mapping[str, Any] | None) -> int:
    return 0 if not group else int(group.get("failed", 0)) + int(group.get("errors", 0))


def _as_dict(group: TestGroupResult | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return group.model_dump() if isinstance(group, TestGroupResult) else group


def own_suite_regression(
    before: TestGroupResult | Mapping[str, Any] | None, after: TestGroupResult | Mapping[str, Any] | None
) -> str | None:
    """The one rule for "the repository's own tests regressed": more failing (failed + errors)
    after than before, or fewer passing. Why, or None when they did not (or never ran after)."""
    before, after = _as_dict(before), _as_dict(after)
    if not after:
        return None
    if _failing(after) > _failing(before):
        return f"the repository's own tests regressed: {_failing(before)} failing before, {_failing(after)} after"
    if before and int(after.get("passed", 0)) < int(before.get("passed", 0)):
        return f"the repository's own tests regressed: {before.get('passed')} passed before, {after.get('passed')} after"
    return None


def own_tests_regressed(tests: Mapping[str, Any] | None) -> str | None:
    """Why the repository's own suite got worse according to a TestsCompleted payload, or None."""
    if not tests:
        return None
    after = tests.get("own_after")
    if after and did_not_run(_as_dict(after)):
        return "the repository's own tests could not run after the change: no regression can be claimed"
    regression = own_suite_regression(tests.get("own_before"), after)
    if regression is None and tests.get("regressed"):
        return "the repository's own tests regressed (reported by the tester)"
    return regression


def generated_groups(tests: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [g for g in (tests or {}).get("groups", []) if g.get("group") != "own"]


def did_not_run(group: dict[str, Any]) -> bool:
    """A generated group that errored without a single test passing or failing: it never really ran."""
    return int(group.get("errors", 0)) > 0 and int(group.get("passed", 0)) + int(group.get("failed", 0)) == 0


# A fix often turns a severe finding into its milder sibling: `shell=True` removed (S602) leaves a
# plain subprocess call (S603). That is the finding getting better, not a new one.
_MILDER = {"S602": "S603", "S604": "S603", "S605": "S606"}


def _downgrades_credited(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """`after` with each milder finding that replaced a removed severe one taken out."""
    credited = dict(after)
    for severe, milder in _MILDER.items():
        removed = before.get(severe, 0) - after.get(severe, 0)
        added = credited.get(milder, 0) - before.get(milder, 0)
        if removed > 0 and added > 0:
            credited[milder] -= min(removed, added)
    return credited


def _security_count(counts: dict[str, int]) -> int:
    return sum(n for code, n in counts.items() if is_security_finding(code))


def signal_assessment(signals: dict[str, Any], tests: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score (1–10), the six dimension scores, issues and blockers, from the signals (and test results) alone."""
    before = signals.get("findings_before", {}) or {}
    after = signals.get("findings_after", {}) or {}
    total_before, total_after = sum(before.values()), sum(after.values())
    delta = total_after - total_before
    sec_delta = _security_count(after) - _security_count(before)
    parse_failures = list(signals.get("parse_failures", []) or [])
    diff = signals.get("diff", {}) or {}
    lines = int(diff.get("added", 0)) + int(diff.get("removed", 0))
    files = int(diff.get("files", 0))
    issues: list[str] = []
    blockers: list[str] = []

    credited = _downgrades_credited(before, after)
    grew_security = any(credited.get(c, 0) > before.get(c, 0) for c in credited if is_security_finding(c))
    if delta > 0 or grew_security:
        grown = {
            c: after.get(c, 0) - before.get(c, 0) for c in sorted(after) if after.get(c, 0) > before.get(c, 0)
        }
        listed = ", ".join(f"{c} +{n}" for c, n in grown.items())
        if delta > 0:
            blockers.append(f"findings grew from {total_before} to {total_after} ({listed})")
        else:  # a security finding traded for fewer style findings is still a new security finding
            blockers.append(
                f"security findings grew ({listed}) while the total fell from {total_before} to {total_after}"
            )
    if parse_failures:
        blockers.append("files do not parse at head: " + ", ".join(sorted(parse_failures)))
    regression = own_tests_regressed(tests)
    if regression:
        blockers.append(regression)
    if files == 0:
        issues.append("the change is empty")

    generated = generated_groups(tests)
    failing_groups = sorted(g["group"] for g in generated if _failing(g) and not did_not_run(g))
    broken_groups = sorted(g["group"] for g in generated if did_not_run(g))
    for name in failing_groups:
        issues.append(f"generated tests fail in group {name}")
    for name in broken_groups:
        issues.append(f"generated tests in group {name} did not run")
    own_after = (tests or {}).get("own_after")

    correctness = 8.0
    if own_after is not None:
        correctness = 9.0 if _failing(own_after) == 0 and int(own_after.get("total", 0)) else 7.0
    correctness -= 2.0 * (len(failing_groups) + len(broken_groups))
    if regression:
        correctness = min(correctness, 2.0)
    if parse_failures:
        correctness = 1.0
    security = 7.0 - 0.5 * sec_delta if sec_delta <= 0 else 6.0 - 1.5 * sec_delta
    maintainability = 7.0 - 0.25 * delta if delta <= 0 else 6.0 - 1.0 * delta
    readability = 8.0 if lines <= 200 else 7.0 if lines <= 600 else 5.0 if lines <= 1500 else 3.0
    if tests is None:
        coverage = 5.0
    else:
        coverage = 7.0 if own_after and int(own_after.get("total", 0)) else 4.0
        if generated and not failing_groups and not broken_groups:
            coverage += 1.0 if own_after and int(own_after.get("total", 0)) else 2.0
        elif failing_groups or broken_groups:
            coverage -= 2.0
    scope = 1.0 if files == 0 else 9.0 if files <= 10 else 7.0 if files <= 25 else 5.0 if files <= 60 else 3.0
    scores = {
        "correctness": correctness, "security": security, "maintainability": maintainability,
        "readability": readability, "test_coverage": coverage, "scope": scope,
    }  # fmt: skip
    scores = {k: _clamp(v) for k, v in scores.items()}
    score = _clamp(fmean(scores[d] for d in REVIEW_DIMENSIONS))
    if blockers:
        issues = blockers + issues
    return {"score": score, "scores": scores, "issues": issues, "blockers": blockers,
            "findings_delta": delta, "diff_lines": lines}  # fmt: skip


def signals_summary(assessment: dict[str, Any]) -> str:
    return (
        f"signals {assessment['score']}/10 (findings {assessment['findings_delta']:+d}, "
        f"diff {assessment['diff_lines']} lines)"
    )


def combine_review(
    signals: dict[str, Any], model: ModelReview | None, threshold: float, tests: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The fields of a `ChangesReviewed` payload: signals alone, or blended with a model's review.

    passed = overall >= threshold and no blockers. A model whose score is FLAG_DISTANCE or more away
    from the signal score is flagged, and both parts are kept (`signals.score`, `model_score`).
    """
    a = signal_assessment(signals, tests)
    issues = list(a["issues"])
    flagged: list[str] = []
    if model is None:
        overall, scores = a["score"], dict(a["scores"])
        summary = signals_summary(a)
    else:
        overall = _clamp((1 - MODEL_WEIGHT) * a["score"] + MODEL_WEIGHT * model.overall)
        scores = {
            d: _clamp((1 - MODEL_WEIGHT) * a["scores"][d] + MODEL_WEIGHT * model.scores[d])
            if d in model.scores
            else a["scores"][d]
            for d in REVIEW_DIMENSIONS
        }
        if abs(model.overall - a["score"]) >= FLAG_DISTANCE:
            flagged.append(
                f"model says {model.overall:.1f} but the signals say {a['score']:.1f} "
                f"(difference {abs(model.overall - a['score']):.1f} ≥ {FLAG_DISTANCE:.0f})"
            )
        issues += [i for i in model.issues if i not in issues]
        summary = f"{signals_summary(a)}; model {model.overall:.1f}/10 → overall {overall}"
        if model.summary:
            summary += f". Model: {model.summary}"
    passed = overall >= threshold and not a["blockers"]
    verdict = (
        "passed"
        if passed
        else ("blocked: " + "; ".join(a["blockers"]) if a["blockers"] else "below threshold")
    )
    summary += f". Threshold {threshold}: {verdict}."
    recorded = {**signals, "score": a["score"], "scores": a["scores"]}
    return {
        "overall": overall, "scores": scores, "issues": issues, "summary": summary, "passed": passed,
        "threshold": threshold, "signals": recorded, "model_score": None if model is None else model.overall,
        "flagged": flagged, "blockers": list(a["blockers"]),
    }  # fmt: skip


def merge_gate(
    review: ChangesReviewed | dict[str, Any], tests: TestsCompleted | dict[str, Any]
) -> tuple[bool, str]:
    """May the merger merge? (False, reason) when the review did not pass, the own tests regressed,
    or a generated test group failed to even run."""
    r = review if isinstance(review, ChangesReviewed) else ChangesReviewed.model_validate(review)
    t = (tests if isinstance(tests, TestsCompleted) else TestsCompleted.model_validate(tests)).model_dump()
    if not r.passed:
        why = (
            "; ".join(r.blockers) if r.blockers else f"score {r.overall} is below the threshold {r.threshold}"
        )
        return False, f"review did not pass: {why}"
    regression = own_tests_regressed(t)
    if regression:
        return False, regression
    broken = sorted(g["group"] for g in generated_groups(t) if did_not_run(g))
    if broken:
        return False, "generated tests did not run in group(s): " + ", ".join(broken)
    return True, f"review passed ({r.overall} ≥ {r.threshold}) and tests did not regress"
