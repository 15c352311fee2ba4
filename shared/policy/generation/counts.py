"""Passed/failed counts from test runner output: pytest, go test, cargo test, jest/vitest (pure).

A task's runner may run its test tool more than once (the main suite, then the files a test
patch touches), so every summary found is added up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# pytest's last line: "==== 3 passed, 1 failed, 2 errors in 0.12s ====" (or bare with -q)
_PYTEST_SUMMARY = re.compile(
    r"^=*\s*((?:\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?|rerun)"
    r"(?:, )?)+)\s+in [\d.]+s", re.MULTILINE)
_PYTEST_NO_TESTS = re.compile(r"^=*\s*no tests ran in [\d.]+s", re.MULTILINE)
_PYTEST_PART = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")

# go test -v: "--- PASS: TestX (0.00s)" (subtests indented); without -v only package lines.
_GO_CASE = re.compile(r"^\s*--- (PASS|FAIL|SKIP): ", re.MULTILINE)
_GO_PKG = re.compile(r"^(ok|FAIL|---)\s+\S+\s+(?:[\d.]+s|\(cached\)|\[)", re.MULTILINE)

# cargo: "test result: ok. 5 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; ..."
_CARGO = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")

# jest: "Tests:       1 failed, 1 skipped, 4 passed, 6 total"; vitest: "Tests  2 failed | 5 passed (7)"
_JEST = re.compile(r"^\s*Tests:\s+(.*?\d+ total)", re.MULTILINE)
_VITEST = re.compile(r"^\s*Tests\s+((?:\d+ \w+(?: \| )?)+)\s*\(\d+\)", re.MULTILINE)
_COUNT_WORD = re.compile(r"(\d+) (passed|failed|skipped|todo|pending)")


@dataclass(frozen=True)
class TestCounts:
    __test__ = False  # not a pytest test class

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    framework: str = ""

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def found(self) -> bool:
        return bool(self.framework)


def parse_pytest(output: str) -> TestCounts | None:
    summaries = _PYTEST_SUMMARY.findall(output)
    if not summaries:
        return TestCounts(framework="pytest") if _PYTEST_NO_TESTS.search(output) else None
    totals = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for summary in summaries:
        for n, word in _PYTEST_PART.findall(summary):
            key = {"error": "errors", "xfailed": "skipped", "xpassed": "passed"}.get(word, word)
            totals[key] += int(n)
    return TestCounts(**totals, framework="pytest")


def parse_go_test(output: str) -> TestCounts | None:
    cases = _GO_CASE.findall(output)
    if cases:
        return TestCounts(passed=cases.count("PASS"), failed=cases.count("FAIL"),
                          skipped=cases.count("SKIP"), framework="go test")
    packages = [m.group(1) for m in _GO_PKG.finditer(output)]
    if packages:  # without -v only whole packages are reported
        return TestCounts(passed=packages.count("ok"), failed=packages.count("FAIL"), framework="go test")
    return None


def parse_cargo_test(output: str) -> TestCounts | None:
    results = _CARGO.findall(output)
    if not results:
        return None
    return TestCounts(passed=sum(int(p) for p, _, _ in results), failed=sum(int(f) for _, f, _ in results),
                      skipped=sum(int(i) for _, _, i in results), framework="cargo test")


def parse_jest(output: str) -> TestCounts | None:
    lines = _JEST.findall(output) or _VITEST.findall(output)
    if not lines:
        return None
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for line in lines:
        for n, word in _COUNT_WORD.findall(line):
            totals["skipped" if word in ("skipped", "todo", "pending") else word] += int(n)
    return TestCounts(**totals, framework="jest")


def parse_test_counts(output: str) -> TestCounts:
    """Counts from whichever test tool's summary appears; an empty TestCounts when none does."""
    output = _ANSI.sub("", output)
    for parser in (parse_pytest, parse_cargo_test, parse_jest, parse_go_test):
        counts = parser(output)
        if counts is not None:
            return counts
    return TestCounts()
