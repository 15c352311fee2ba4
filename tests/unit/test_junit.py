"""JUnit XML parsing, on reports pytest itself produced (trimmed tracebacks) and generic ones."""

from __future__ import annotations

import pytest

from shared.adapters.junit import JUnitError, parse_junit, read_junit

pytestmark = pytest.mark.unit

# `pytest --junitxml` of a module with a pass, a failure, a fixture error, a skip, an xfail and a
# passing method in a class (pytest 9).
PYTEST_MIXED = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="2" tests="6" time="0.102" timestamp="2026-11-22T08:25:10.620942+00:00" hostname="vm"><testcase classname="test_mix" name="test_ok" time="0.001" /><testcase classname="test_mix" name="test_fail" time="0.001"><failure message="AssertionError: one is not two&#10;assert 1 == 2">def test_fail():
&gt;       assert 1 == 2, "one is not two"
E       AssertionError: one is not two

test_mix.py:11: AssertionError</failure></testcase><testcase classname="test_mix" name="test_error" time="0.001"><error message="failed on setup with &quot;RuntimeError: fixture broke&quot;">@pytest.fixture
    def broken():
&gt;       raise RuntimeError("fixture broke")
E       RuntimeError: fixture broke</error></testcase><testcase classname="test_mix" name="test_skip" time="0.000"><skipped type="pytest.skip" message="not today">/tmp/jx/test_mix.py:16: not today</skipped></testcase><testcase classname="test_mix" name="test_xfail" time="0.001"><skipped type="pytest.xfail" message="known" /></testcase><testcase classname="test_mix.TestGroup" name="test_method" time="0.001" /></testsuite></testsuites>"""

# A module that fails to import: pytest reports a collection error as an errored testcase.
PYTEST_COLLECTION_ERROR = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="0" skipped="0" tests="1" time="0.294" timestamp="2026-11-22T08:25:11.779633+00:00" hostname="vm"><testcase classname="" name="col.test_bad" time="0.000"><error message="collection failure">ImportError while importing test module '/tmp/jx/col/test_bad.py'.
E   ModuleNotFoundError: No module named 'nonexistent_module_xyz'</error></testcase></testsuite></testsuites>"""

# No tests collected (pytest exits 5 but still writes a report).
PYTEST_EMPTY = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="0" skipped="0" tests="0" time="0.033" timestamp="2026-11-22T08:25:13.243261+00:00" hostname="vm" /></testsuites>"""

# Teardown errors: pytest adds a second testcase with the same name for the failing teardown.
PYTEST_TEARDOWN = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="2" failures="1" skipped="0" tests="3" time="0.078" hostname="vm"><testcase classname="test_td" name="test_fails_then_teardown" time="0.001"><failure message="assert False">...</failure></testcase><testcase classname="test_td" name="test_fails_then_teardown" time="0.000"><error message="failed on teardown with &quot;RuntimeError: teardown broke&quot;">...</error></testcase><testcase classname="test_td" name="test_passes_then_teardown" time="0.001"><error message="failed on teardown with &quot;RuntimeError: teardown broke&quot;">...</error></testcase></testsuite></testsuites>"""


def test_pytest_mixed_outcomes():
    t = parse_junit(PYTEST_MIXED)
    assert (t.total, t.passed, t.failed, t.errors, t.skipped) == (6, 2, 1, 1, 2)
    assert t.failing == ["test_mix::test_fail", "test_mix::test_error"]


def test_pytest_collection_error_counts_as_error():
    t = parse_junit(PYTEST_COLLECTION_ERROR)
    assert (t.total, t.passed, t.failed, t.errors) == (1, 0, 0, 1)
    assert t.failing == ["col.test_bad"]


def test_pytest_no_tests_is_all_zeros():
    t = parse_junit(PYTEST_EMPTY)
    assert (t.total, t.passed, t.failed, t.errors, t.skipped, t.failing) == (0, 0, 0, 0, 0, [])


def test_pytest_teardown_errors_agree_with_the_report_attributes():
    t = parse_junit(PYTEST_TEARDOWN)
    assert (t.total, t.passed, t.failed, t.errors) == (3, 0, 1, 2)


def test_generic_nested_suites_counted_once():
    xml = """<testsuites><testsuite name="outer" tests="3">
        <testsuite name="inner" tests="3">
          <testcase classname="a.B" name="one"/>
          <testcase classname="a.B" name="two"><failure/></testcase>
          <testcase name="three"><skipped/></testcase>
        </testsuite></testsuite></testsuites>"""
    t = parse_junit(xml)
    assert (t.total, t.passed, t.failed, t.skipped) == (3, 1, 1, 1)
    assert t.failing == ["a.B::two"]


def test_bare_testsuite_root():
    t = parse_junit(
        '<testsuite tests="2"><testcase name="x"/><testcase name="y"><error/></testcase></testsuite>'
    )
    assert (t.total, t.passed, t.errors, t.failing) == (2, 1, 1, ["y"])


def test_attribute_only_report():
    xml = '<testsuites><testsuite tests="10" failures="2" errors="1" skipped="3"/></testsuites>'
    t = parse_junit(xml)
    assert (t.total, t.passed, t.failed, t.errors, t.skipped) == (10, 4, 2, 1, 3)


@pytest.mark.parametrize("bad", ["", "not xml", "<html><body/></html>", "<testsuites><testsuite>"])
def test_not_junit_is_an_error(bad):
    with pytest.raises(JUnitError):
        parse_junit(bad)


def test_read_junit_missing_or_empty_file(tmp_path):
    with pytest.raises(JUnitError, match="no JUnit report"):
        read_junit(tmp_path / "missing.xml")
    (tmp_path / "empty.xml").write_text("")
    with pytest.raises(JUnitError):
        read_junit(tmp_path / "empty.xml")
    (tmp_path / "ok.xml").write_text(PYTEST_MIXED)
    assert read_junit(tmp_path / "ok.xml").total == 6


def test_an_entity_bomb_written_by_the_tests_is_refused():
    bomb = ('<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
            '<testsuite tests="1"><testcase name="&c;"/></testsuite>')
    with pytest.raises(JUnitError, match="refused"):
        parse_junit(bomb)
