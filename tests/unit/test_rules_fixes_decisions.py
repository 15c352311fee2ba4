"""Pure decisions of the rules engine's fixes: lint grouping, codemod choice, severities, evidence score,
validation verdicts, what tests of the change cover, which generated tests are committed."""

from __future__ import annotations

import pytest

from shared.adapters.analyzers import Finding
from shared.adapters.codemods import CodemodInfo, parse_codetf
from shared.engines.rules.change_tests import ChangeTests, bound_name, functions_at, render, unused_imports
from shared.engines.rules.codemods import codemod_improvements
from shared.engines.rules.lint import family_of, is_behaviour_changing, lint_improvements
from shared.engines.rules.validate import compare, failing_tests
from shared.events import TestGroupResult
from shared.policy.findings import severity, weighted
from shared.policy.review import combine_review, signal_assessment
from shared.policy.review import tests_to_commit as commit_selection

pytestmark = pytest.mark.unit


def f(code, path="pkg/a.py", line=1, fixable=False, unsafe=False, name="rule"):
    return Finding(path, line, code, f"message of {code}", fixable=fixable, name=name, unsafe_fix=unsafe)


def test_lint_findings_group_by_family_and_safety():
    findings = [f("F401", fixable=True, line=n) for n in range(1, 7)] + [
        f("E711", unsafe=True), f("UP045", fixable=True), f("F841"), f("S602")]
    imps = {i.id: i for i in lint_improvements(findings)}
    assert set(imps) == {"compliance-lint-f", "compliance-lint-e7-unsafe", "features-lint-up"}
    assert imps["compliance-lint-f"].rule == "lint:F401" and "×6" in imps["compliance-lint-f"].rationale
    assert imps["compliance-lint-e7-unsafe"].rule == "lint-unsafe:E711"
    assert "own tests" in imps["compliance-lint-e7-unsafe"].rationale
    assert imps["features-lint-up"].category == "features"
    assert family_of("SIM117").name == "flake8-simplify" and family_of("FBT001") is None
    assert is_behaviour_changing("codemod:pixee:python/secure-random") and not is_behaviour_changing("lint:F401")
    assert is_behaviour_changing("check:public-api")  # `__all__` changes what `import *` binds


def test_codemods_are_chosen_for_the_findings_at_hand_most_severe_first():
    infos = {c: CodemodInfo(c, f"summary {c}", f"What {c} does.\n\n```diff\n-x\n+y\n```")
             for c in ("pixee:python/secure-random", "pixee:python/subprocess-shell-false")}  # fmt: skip
    imps = codemod_improvements([f("S311"), f("S602", line=5), f("S105")], infos)
    # S311 is fixed site by site (fix:secure-random), never by the codemod that rewrites every use in a file
    assert [i.rule for i in imps] == ["codemod:pixee:python/subprocess-shell-false"]
    assert "What pixee:python/subprocess-shell-false does." in imps[0].rationale and "```" not in imps[0].rationale
    assert "S602" in imps[0].rationale and "`pkg/a.py:5` S602" in imps[0].changes
    assert codemod_improvements([f("S602")], {}) == []  # a codemod the tools env lacks is not proposed


def test_severity_weighs_hardening_trades_as_an_improvement():
    assert severity("S602") == "high" and severity("bandit:B602") == "high" and severity("S603") == "low"
    assert severity("F401") == "style" and severity("B009") == "medium" and severity("secret:aws") == "high"
    assert weighted({"S603": 1}) < weighted({"S602": 1})


def test_codetf_changes_failures_and_dependencies_are_read():
    data = {"results": [{"codemod": "pixee:python/use-defusedxml", "failedFiles": ["x.py"], "changeset": [
        {"path": "a.py", "changes": [{"description": "Replace xml", "packageActions": [
            {"action": "add", "result": "completed", "package": "defusedxml"}]}]}]}]}  # fmt: skip
    [r] = parse_codetf(data)
    assert r.changed == ["a.py"] and r.descriptions == ["Replace xml"]
    assert r.dependencies == ["defusedxml"] and r.failures == ["x.py"]


def group(passed, failed=0, errors=0, name="own", output=""):
    return TestGroupResult(group=name, total=passed + failed + errors, passed=passed, failed=failed, errors=errors,
                           output=output)  # fmt: skip


def test_a_fix_is_kept_only_when_no_passing_test_starts_failing():
    assert compare(group(4), group(4)).ok
    broken = compare(group(4), group(3, 1, output="FAILED tests.test_x::test_y"))
    assert not broken.ok and "tests.test_x::test_y" in broken.reason
    assert not compare(group(0), group(0)).ok and "no tests" in compare(group(0), group(0)).reason
    # a test that already failed before does not count against the fix
    assert compare(group(3, 1, output="FAILED a::b"), group(3, 1, output="FAILED a::b")).ok
    assert failing_tests(group(1, 2, output="x\nFAILED a::b\nFAILED c::d")) == {"a::b", "c::d"}


NEUTRAL = {"findings_before": {"F401": 2}, "findings_after": {"F401": 2}, "parse_failures": [],
           "diff": {"files": 4, "added": 480, "removed": 20}}  # fmt: skip


def suite(own=(5, 0), groups=(("smoke", 3, 0),)):
    own_r = {"group": "own", "total": sum(own), "passed": own[0], "failed": own[1], "errors": 0}
    return {"own_before": own_r, "own_after": own_r, "regressed": False,
            "groups": [{"group": g, "total": p + x, "passed": p, "failed": x, "errors": 0} for g, p, x in groups]}


def test_a_neutral_change_scores_below_7_and_the_review_says_why():
    verdict = combine_review(NEUTRAL, None, threshold=7.0, tests=suite())
    assert verdict["overall"] < 7.0 and verdict["passed"] is False
    reasons = verdict["signals"]["reasons"]
    assert any("removes no finding and adds no passing test" in r for r in reasons)
    assert "removes no finding" in verdict["summary"]


def test_documents_and_configs_alone_stay_below_the_gate_unless_asked_for():
    docs = {"findings_before": {}, "findings_after": {}, "parse_failures": [], "created_files": ["SECURITY.md"],
            "diff": {"files": 3, "added": 60, "removed": 0,
                     "paths": ["SECURITY.md", ".github/workflows/ci.yml", "tests/repo_pilot/test_compliance.py"]}}
    tested = suite(groups=(("smoke", 3, 0), ("compliance", 4, 0)))
    unasked = signal_assessment(docs, tested)
    assert unasked["score"] <= 6.5 and not any("project files" in r for r in unasked["reasons"])
    assert not any("generated tests of the change pass" in r for r in unasked["reasons"])  # they check existence
    code = {**docs, "findings_before": {"F401": 6}, "diff": {**docs["diff"], "paths": ["pkg/a.py", "SECURITY.md"]}}
    assert signal_assessment(code, tested)["score"] >= 7.0
    asked = signal_assessment({**docs, "asked_for_files": True}, tested)  # e.g. `--categories compliance`
    assert asked["score"] >= 7.0 and any("the request asked for" in r for r in asked["reasons"])
    # no existence-only test is generated any more: what the request asked for carries the files alone
    smoke_only = suite(groups=(("smoke", 3, 0),))
    assert signal_assessment({**docs, "asked_for_files": True}, smoke_only)["score"] >= 7.0
    assert signal_assessment(docs, smoke_only)["score"] <= 6.5


def test_a_committed_generated_test_that_fails_blocks_the_merge():
    fix = {**NEUTRAL, "findings_after": {}, "diff": {"files": 1, "added": 5, "removed": 5, "paths": ["pkg/a.py"]}}
    red = signal_assessment(fix, suite(groups=(("smoke", 3, 0), ("security", 1, 2))))
    assert "generated tests fail in group security" in red["blockers"]
    smoke_red = signal_assessment(fix, suite(groups=(("smoke", 1, 2), ("security", 3, 0))))
    assert not smoke_red["blockers"]  # the smoke group is never committed: it only lowers the score


def test_the_score_includes_the_test_results_and_lists_its_reasons():
    fix = {**NEUTRAL, "findings_before": {"S602": 1, "S311": 1, "F401": 6},
           "findings_after": {"S603": 1}, "validated_fixes": 2, "diff": {"files": 1, "added": 5, "removed": 12}}
    green = signal_assessment(fix, suite(groups=(("smoke", 3, 0), ("security", 3, 0))))
    red = signal_assessment(fix, suite(groups=(("smoke", 3, 0), ("security", 1, 2))))
    unknown = signal_assessment(fix, None)
    assert green["score"] >= 8.0 and not green["blockers"]
    assert red["score"] < green["score"] and unknown["score"] < green["score"]
    assert any(r.startswith("+1.5 own tests pass") for r in green["reasons"])
    assert any("generated tests fail in group security" in r for r in red["reasons"])
    assert any("validated by the own tests: 2" in r for r in green["reasons"])
    assert green["scores"]["test_coverage"] > unknown["scores"]["test_coverage"]


def test_only_passing_groups_of_the_change_are_committed():
    generated = {"files": {"tests/repo_pilot/test_smoke.py": "s", "tests/repo_pilot/test_security_change.py": "x",
                           "tests/repo_pilot/test_compliance_change.py": "y"},
                 "groups": {"smoke": ["tests/repo_pilot/test_smoke.py"],
                            "security": ["tests/repo_pilot/test_security_change.py"],
                            "compliance": ["tests/repo_pilot/test_compliance_change.py"]}}  # fmt: skip
    results = suite(groups=(("smoke", 2, 0), ("security", 3, 0), ("compliance", 1, 1)))
    assert commit_selection(generated, results) == {"tests/repo_pilot/test_security_change.py": "x"}
    assert commit_selection(None, results) == {}


def test_what_the_tests_of_a_change_cover():
    source = "import os\nfrom collections import OrderedDict as OD\n\n\ndef a():\n    return 1\n\n\ndef _b():\n    pass\n"
    assert functions_at(source, {6}) == ["a"] and functions_at(source, {10}) == []
    assert bound_name("collections.OrderedDict", source) == "OD" and bound_name("os", source) == "os"
    listing = "- `pkg/a.py:1` F401: `os` imported but unused\n- `pkg/a.py:2` F401: `collections.OrderedDict` imported but unused"
    assert unused_imports(listing) == {"pkg/a.py": ["os", "collections.OrderedDict"]}
    text = render("security", ChangeTests(spies=[("pixee:python/secure-random", "pkg.a", "a")],
                                          unused_imports={"pkg.a": ["os"]}))  # fmt: skip
    compile(text, "generated", "exec")
    assert "def test_pkg_a_a_uses_no_predictable_random" in text and "def test_unused_imports_are_gone_from_pkg_a" in text
    assert render("security", ChangeTests()) is None
