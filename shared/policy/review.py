"""Scoring a change from evidence, blending in a model's opinion, and the merge gate (pure).

The evidence score (docs/review.md) never depends on a model: findings removed and added by
severity, the repository's own tests before and after, generated tests of the change, fixes
validated by the own tests, files that parse, and the size of the change; each contributes a
signed reason line, and a change that removes no finding and adds no passing test of changed code,
or touches only documents and configs nobody asked for, is capped below 7.0. A model's score is blended in, flagged when it is far
from the signals, and can never lift a blocker: findings that grew, files that no longer parse,
or the repository's own tests regressing forbid an auto-merge whatever the model says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.events.run import ChangesReviewed, TestGroupResult, TestsCompleted
from shared.policy.paths import is_code_path, is_project_file
from shared.policy.findings import WEIGHTS, is_security, severity, weighted
from shared.ports.engine import REVIEW_DIMENSIONS, ModelReview

MODEL_WEIGHT = 0.5  # the model and the signals count equally when both exist
FLAG_DISTANCE = 3.0  # a model this far from the signals is reported as a disagreement


def explicitly_asked(category: str, categories: list[str]) -> bool:
    """A category asked for on its own (not the default "everything"): the user wants its documents
    and configs, so they may be proposed (and merged) without code changes to carry them."""
    from shared.events.run import CATEGORIES

    return category in categories and set(categories) != set(CATEGORIES)


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
    return sum(n for code, n in counts.items() if is_security(code))


# The evidence score (docs/review.md): a base, plus points for each kind of evidence, capped.
BASE = 4.0
NO_EVIDENCE_CAP = 6.5  # removes no finding and adds no passing test: never reaches 7.0
SEVERITIES = ("high", "medium", "low", "style")


def _severity_counts(before: dict[str, int], after: dict[str, int]) -> tuple[dict, dict, float, float]:
    """Findings removed and added, by severity, and their weights (shared.policy.findings)."""
    removed = {s: 0 for s in SEVERITIES}
    added = {s: 0 for s in SEVERITIES}
    removed_w = added_w = 0.0
    for code in set(before) | set(after):
        n = after.get(code, 0) - before.get(code, 0)
        sev = severity(code)
        if n < 0:
            removed[sev] -= n
            removed_w += -n * WEIGHTS[sev]
        elif n > 0:
            added[sev] += n
            added_w += n * WEIGHTS[sev]
    return removed, added, removed_w, added_w


def _by_sev(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none"


def evidence_score(signals: dict[str, Any], tests: dict[str, Any] | None) -> tuple[float, list[str], dict]:
    """The score from evidence alone and the reasons behind it, one signed line per kind of evidence."""
    before = signals.get("findings_before", {}) or {}
    after = signals.get("findings_after", {}) or {}
    removed, added, removed_w, added_w = _severity_counts(before, after)
    reasons: list[str] = [f"{BASE:.1f} base"]
    score = BASE
    pts = min(3.0, 0.6 * removed_w)
    if pts:
        reasons.append(f"+{pts:.1f} findings removed: {_by_sev(removed)}")
    score += pts
    if added_w:
        pen = min(4.0, 1.0 * added_w)
        reasons.append(f"-{pen:.1f} findings added: {_by_sev(added)}")
        score -= pen
    own_before, own_after = (tests or {}).get("own_before"), (tests or {}).get("own_after")
    if tests is None:
        reasons.append("+0.0 test results not available to the review")
    elif own_after and int(own_after.get("total", 0)):
        if own_tests_regressed(tests):
            reasons.append(
                f"-3.0 own tests regressed ({_failing(own_before)} failing before, {_failing(own_after)} after)"
            )
            score -= 3.0
        elif _failing(own_after) == 0:
            reasons.append(f"+1.5 own tests pass before and after ({int(own_after.get('passed', 0))} passed)")
            score += 1.5
        else:
            reasons.append(f"+0.5 own tests no worse ({_failing(own_after)} failing before and after)")
            score += 0.5
    elif own_after and did_not_run(own_after):
        reasons.append("+0.0 the repository's own tests did not run (see the test output)")
    else:
        reasons.append("+0.0 the repository has no tests of its own")
    generated = generated_groups(tests)
    paths = list((signals.get("diff", {}) or {}).get("paths", []) or [])
    code = [p for p in paths if is_code_path(p)]
    change_groups = [g for g in generated if g.get("group") != "smoke"]
    # Tests of a change that touched no code can only check that files exist: no evidence.
    asked = bool(signals.get("asked_for_files"))
    passing = [g for g in change_groups if int(g.get("passed", 0)) and not _failing(g)
               if code or asked or not paths]  # fmt: skip
    if passing:
        n = sum(int(g.get("passed", 0)) for g in passing)
        reasons.append(
            f"+1.0 generated tests of the change pass ({n} in {', '.join(g['group'] for g in passing)})"
        )
        score += 1.0
    for g in generated:
        if did_not_run(g):
            reasons.append(f"-1.0 generated tests in group {g['group']} did not run")
            score -= 1.0
        elif _failing(g):
            reasons.append(f"-1.5 generated tests fail in group {g['group']} ({_failing(g)} failing)")
            score -= 1.5
    project_files = [f for f in signals.get("created_files", []) or [] if is_project_file(f)]
    if project_files and asked:
        # What the request asked for is the evidence here: no generated test is written that only
        # checks a file exists (a maintainer would delete it), so the request carries the point.
        reasons.append(f"+1.5 project files the request asked for, added: {', '.join(project_files[:6])}")
        score += 1.5
    validated = int(signals.get("validated_fixes", 0) or 0)
    if validated:
        pts = min(0.5, 0.25 * validated)
        reasons.append(f"+{pts:.2f} behaviour-changing fixes validated by the own tests: {validated}")
        score += pts
    parse_failures = list(signals.get("parse_failures", []) or [])
    if parse_failures:
        reasons.append(f"-5.0 files that do not parse: {len(parse_failures)}")
        score -= 5.0
    diff = signals.get("diff", {}) or {}
    lines = int(diff.get("added", 0)) + int(diff.get("removed", 0))
    if lines > 600:
        pen = 1.0 if lines <= 1500 else 2.0
        reasons.append(f"-{pen:.1f} large change ({lines} lines)")
        score -= pen
    if not removed_w and not passing and not (project_files and asked):
        reasons.append(f"at most {NO_EVIDENCE_CAP}: the change removes no finding and adds no passing test")
        score = min(score, NO_EVIDENCE_CAP)
    elif paths and not code and not asked:
        reasons.append(f"at most {NO_EVIDENCE_CAP}: the change touches only documents, configs or tests, which the "
                       "request did not ask for on their own")  # fmt: skip
        score = min(score, NO_EVIDENCE_CAP)
    detail = {"removed": removed, "added": added, "removed_weight": round(removed_w, 2),
              "added_weight": round(added_w, 2), "validated_fixes": validated}  # fmt: skip
    return _clamp(score), reasons, detail


def signal_assessment(signals: dict[str, Any], tests: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score (1–10) from evidence, the six dimension scores, the reasons, issues and blockers."""
    before = signals.get("findings_before", {}) or {}
    after = signals.get("findings_after", {}) or {}
    total_before, total_after = sum(before.values()), sum(after.values())
    delta = total_after - total_before
    sec_before = weighted({c: n for c, n in before.items() if is_security(c)})
    sec_after = weighted({c: n for c, n in after.items() if is_security(c)})
    parse_failures = list(signals.get("parse_failures", []) or [])
    diff = signals.get("diff", {}) or {}
    lines = int(diff.get("added", 0)) + int(diff.get("removed", 0))
    files = int(diff.get("files", 0))
    issues: list[str] = []
    blockers: list[str] = []

    credited = _downgrades_credited(before, after)
    grew_security = any(credited.get(c, 0) > before.get(c, 0) for c in credited if is_security(c))
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
    committed = [g for g in generated if g.get("group") != "smoke"]  # the smoke group is never committed
    for g in committed:  # a generated test that fails or cannot run would break the project's own suite
        if did_not_run(g):
            blockers.append(f"generated tests in group {g['group']} did not run (not collected)")
        elif _failing(g):
            blockers.append(f"generated tests fail in group {g['group']}")
    issues += [f"generated tests fail in group {n}" for n in failing_groups if n == "smoke"]
    issues += [f"generated tests in group {n} did not run" for n in broken_groups if n == "smoke"]
    own_after = (tests or {}).get("own_after")
    score, reasons, detail = evidence_score(signals, tests)

    correctness = 8.0
    if own_after is not None:
        correctness = 9.0 if _failing(own_after) == 0 and int(own_after.get("total", 0)) else 7.0
    correctness -= 2.0 * (len(failing_groups) + len(broken_groups))
    if regression:
        correctness = min(correctness, 2.0)
    if parse_failures:
        correctness = 1.0
    sec_delta = sec_after - sec_before
    security = 7.0 - 0.5 * sec_delta if sec_delta <= 0 else 6.0 - 1.5 * sec_delta
    maintainability = 7.0 - 0.25 * delta if delta <= 0 else 6.0 - 1.0 * delta
    readability = 8.0 if lines <= 200 else 7.0 if lines <= 600 else 5.0 if lines <= 1500 else 3.0
    if tests is None:
        coverage = 4.0
    else:
        coverage = 7.0 if own_after and int(own_after.get("total", 0)) else 4.0
        if any(g.get("group") != "smoke" and int(g.get("passed", 0)) and not _failing(g) for g in generated):
            coverage += 2.0
        if failing_groups or broken_groups:
            coverage -= 2.0
    scope = 1.0 if files == 0 else 9.0 if files <= 10 else 7.0 if files <= 25 else 5.0 if files <= 60 else 3.0
    scores = {
        "correctness": correctness, "security": security, "maintainability": maintainability,
        "readability": readability, "test_coverage": coverage, "scope": scope,
    }  # fmt: skip
    scores = {k: _clamp(v) for k, v in scores.items()}
    if blockers:
        issues = blockers + issues
    return {"score": score, "scores": scores, "issues": issues, "blockers": blockers, "reasons": reasons,
            "evidence": detail, "findings_delta": delta, "diff_lines": lines}  # fmt: skip


def signals_summary(assessment: dict[str, Any]) -> str:
    return (
        f"evidence {assessment['score']}/10 (findings {assessment['findings_delta']:+d}, "
        f"diff {assessment['diff_lines']} lines): " + "; ".join(assessment.get("reasons", []))
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
    recorded = {**signals, "score": a["score"], "scores": a["scores"], "reasons": a["reasons"],
                "evidence": a["evidence"]}  # fmt: skip
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
    failing = sorted(g["group"] for g in generated_groups(t) if _failing(g) and g.get("group") != "smoke")
    if failing:
        return False, "generated tests fail in group(s): " + ", ".join(failing)
    return True, f"review passed ({r.overall} ≥ {r.threshold}) and tests did not regress"


def tests_to_commit(generated: Any, tests: Any) -> dict[str, str]:
    """The generated test files to commit with the change (path -> content): those of the change's
    groups (every category; not the generic smoke group) that ran at least one test and all passed."""
    if generated is None or tests is None:
        return {}
    g = generated if isinstance(generated, dict) else generated.model_dump()
    t = tests if isinstance(tests, dict) else tests.model_dump()
    results = {r["group"]: r for r in t.get("groups", [])}
    keep: dict[str, str] = {}
    for group, paths in sorted((g.get("groups") or {}).items()):
        r = results.get(group)
        if group == "smoke" or not r or not int(r.get("passed", 0)) or _failing(r):
            continue
        keep.update({p: g["files"][p] for p in paths if p in g.get("files", {})})
    return keep
