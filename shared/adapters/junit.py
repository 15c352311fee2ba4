"""Reading test results from JUnit XML (pytest's and the generic testsuites/testsuite shape).

Counts come from the XML, never from console text: console output changes with plugins,
verbosity and versions, the XML report does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as ET  # refuses entity tricks (billion laughs, external entities)

# A report is written by code under test; a runaway one must not exhaust the service.
MAX_REPORT_BYTES = 50 * 1024 * 1024


class JUnitError(ValueError):
    """The report is missing, too large or not JUnit XML."""


@dataclass(frozen=True)
class JUnitTotals:
    """Outcome counts of one report, and the names of the tests that failed or errored."""

    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failing: list[str] = field(default_factory=list)


def _outcome(case) -> str:
    # A test that failed and then broke its teardown reports both; the failure is the news.
    tags = {child.tag for child in case}
    if "failure" in tags:
        return "failed"
    if "error" in tags:
        return "errors"
    if "skipped" in tags:
        return "skipped"
    return "passed"


def _case_name(case) -> str:
    classname = case.get("classname") or ""
    name = case.get("name") or "?"
    return f"{classname}::{name}" if classname else name


def _suites(root) -> list:
    if root.tag == "testsuite":
        return [root]
    if root.tag == "testsuites":
        return list(root.iter("testsuite")) or [root]
    raise JUnitError(f"not a JUnit report: root element is <{root.tag}>")


def _from_attributes(suites) -> JUnitTotals:
    """Totals for reports that carry only suite attributes (no testcase elements)."""

    def total(attr: str) -> int:
        return sum(int(float(s.get(attr) or 0)) for s in suites)

    tests, failures, errors = total("tests"), total("failures"), total("errors")
    skipped = total("skipped") + total("disabled")
    return JUnitTotals(
        total=tests,
        passed=max(tests - failures - errors - skipped, 0),
        failed=failures,
        errors=errors,
        skipped=skipped,
    )


def parse_junit(xml_text: str | bytes) -> JUnitTotals:
    """Count the outcomes in a JUnit XML document; raises JUnitError when it is not one."""
    if len(xml_text) > MAX_REPORT_BYTES:
        raise JUnitError(f"JUnit report larger than {MAX_REPORT_BYTES} bytes")
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise JUnitError(f"malformed JUnit XML: {exc}") from exc
    except DefusedXmlException as exc:
        raise JUnitError(f"JUnit XML refused ({type(exc).__name__}): {exc}") from exc
    suites = _suites(root)
    # Nested suites (generic format) would be counted twice if each suite were summed.
    cases = list(root.iter("testcase"))
    if not cases:
        leaves = [s for s in suites if s.find("testsuite") is None]
        return _from_attributes(leaves or suites)
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    for case in cases:
        outcome = _outcome(case)
        counts[outcome] += 1
        if outcome in ("failed", "errors"):
            failing.append(_case_name(case))
    return JUnitTotals(total=len(cases), failing=failing, **counts)


def read_junit(path: Path) -> JUnitTotals:
    """`parse_junit` of a file; raises JUnitError when it is missing or empty."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise JUnitError(f"no JUnit report at {path}")
    if path.stat().st_size > MAX_REPORT_BYTES:
        raise JUnitError(f"JUnit report larger than {MAX_REPORT_BYTES} bytes: {path}")
    return parse_junit(path.read_bytes())
