"""Pure decisions of the project-checks gate and of generated tests without Hypothesis."""

from __future__ import annotations

import pytest

from shared.policy.checks_gate import CheckRun, added, changed_ranges, limit_to_changed
from shared.engines.rules.change_tests import ChangeTests, bare_callable, plain_arguments, render

pytestmark = pytest.mark.unit


def test_a_repair_is_cut_back_to_the_lines_the_change_touched():
    base = "a = 1\nb  =  2\n\n\nc = 3\nd  =  4\n"
    after = "a = 1\nb  =  2\n\n\nc = 3\nnew  =  5\nd  =  4\n"  # the change added `new  =  5`
    repaired = "a = 1\nb = 2\n\n\nc = 3\nnew = 5\nd = 4\n"  # a formatter fixed everything
    out = limit_to_changed(after, repaired, changed_ranges(base, after), reach=0)
    assert out == "a = 1\nb  =  2\n\n\nc = 3\nnew = 5\nd  =  4\n"


def test_blank_line_debris_beside_a_deletion_is_within_reach():
    base = "import os\nimport sys\n\n\ndef f():\n    return sys\n"
    after = "import sys\n\n\ndef f():\n    return sys\n"
    assert changed_ranges(base, after) == [(0, 0)]
    debris = "\n\n\nimport sys\n\n\ndef f():\n    return sys\n"
    cleaned = "import sys\n\n\ndef f():\n    return sys\n"
    assert limit_to_changed(debris, cleaned, changed_ranges(base, debris)) == cleaned


def test_a_finding_that_only_moved_is_not_added():
    before = CheckRun("ruff", ("a.py: F401 `os` unused",), ("a.py:1 F401 `os` unused",))
    after = CheckRun("ruff", ("a.py: F401 `os` unused", "a.py: B006 mutable"),
                     ("a.py:3 F401 `os` unused", "a.py:7 B006 mutable"))  # fmt: skip
    assert added(before, after) == ["a.py:7 B006 mutable"]


def test_functions_callable_without_arguments():
    source = "def a(): pass\ndef b(x=1, *, y=2): pass\ndef c(x): pass\ndef d(*, y): pass\nasync def e(): pass\n"
    assert [n for n in "abcde" if bare_callable(source, n)] == ["a", "b"]


def test_functions_callable_with_plain_arguments():
    source = ("def a(text: str, n: int, flag: bool = True): pass\ndef b(x: float, /, y=1): pass\n"
              "def c(items: list): pass\ndef d(x): pass\ndef e(*, y: str): pass\n")  # fmt: skip
    assert [plain_arguments(source, n) for n in "abcde"] == ["'x', 1", "1.0", None, None, None]


def test_without_hypothesis_nothing_imports_it_and_no_vacuous_spy_test_is_written():
    plan = ChangeTests(spies=[("pixee:python/secure-random", "pkg.a", "token"),
                              ("pixee:python/secure-random", "pkg.a", "shuffle_with")],
                       bare={"pkg.a.token": ""})  # fmt: skip
    text = render("security", plan, hypothesis=False)
    assert "hypothesis" not in text and "@given" not in text
    assert "def test_pkg_a_token_uses_no_predictable_random():" in text
    assert "shuffle_with" not in text  # it needs arguments only Hypothesis could draw
    plan.bare["pkg.a.shuffle_with"] = "'x', 1"
    text = render("security", plan, hypothesis=False)
    assert "_call(importlib.import_module('pkg.a').shuffle_with, 'x', 1)" in text
    compile(text, "test_security_change.py", "exec")
    assert render("security", ChangeTests(spies=[("pixee:python/secure-random", "pkg.a", "f")]),
                  hypothesis=False) is None  # fmt: skip


def test_the_verdict_reports_each_tool_before_and_after_and_names_what_the_change_adds():
    from shared.policy.checks_gate import GateReport, rejection, verdict

    before = {"ruff": CheckRun("ruff", ("a.py: F401 x",), ("a.py:1 F401 x",)), "mypy": CheckRun("mypy", not_run="absent")}
    after = {"ruff": CheckRun("ruff", ("a.py: F401 x", "a.py: E501 long"), ("a.py:3 F401 x", "a.py:9 E501 long")),
             "mypy": CheckRun("mypy", not_run="absent")}  # fmt: skip
    report = GateReport()
    problems = verdict(["ruff", "mypy"], before, after, report)
    assert problems == ["ruff: a.py:9 E501 long"]
    assert (report.checks, report.before, report.after, report.not_run) == (
        ["ruff"], {"ruff": 1}, {"ruff": 2}, {"mypy": "absent"})  # fmt: skip
    many = rejection([f"ruff: f{i}" for i in range(15)])
    assert many.startswith("the change adds 15 finding(s)") and "f11" in many and "f12" not in many
    assert many.endswith("… and 3 more")
