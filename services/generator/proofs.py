"""What makes a generated feature valid: four proofs about its tests, each decided here (pure).

1. `new_tests_ran`: the run with the feature counted at least one test (JUnit first, console
   counts only when no report was written). An empty run (`exit 0`, nothing collected) proves
   nothing.
2. `pass_with_feature`: that run passed (exit 0, no failures, no errors, no timeout).
3. `fail_without_feature`: the same tests with tests.patch alone do not pass; tests that pass
   without the feature do not test it.
4. `existing_tests`: every existing feature's tests that pass on the base (its tests.patch
   alone) still pass with the new feature: nothing the task already tests is broken.

Each proof carries its counts and, when it fails, the reason; result.json holds all four.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from services.generator.counts import TestCounts

CountSource = Literal["junit", "console", "none"]


@dataclass
class TestRun:
    """One run of the task's test script: exit code, counts and where they were read from."""

    __test__ = False

    passed: bool
    counts: TestCounts
    exit_code: int
    backend: str
    command: list[str]
    output: str = ""
    timed_out: bool = False
    duration: float = 0.0
    source: CountSource = "none"
    failing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        why = "timed out" if self.timed_out else f"exit code {self.exit_code}"
        return f"{why}; {c.passed} passed, {c.failed} failed, {c.errors} errors (counts from {self.source})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"]["total"] = self.counts.total
        return data


def run_passed(exit_code: int, timed_out: bool, counts: TestCounts) -> bool:
    """A run passes when it exits 0 in time with no failing or erroring test (pure)."""
    return exit_code == 0 and not timed_out and counts.failed == 0 and counts.errors == 0


@dataclass
class Proof:
    ok: bool
    reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    detail: list[dict[str, Any]] = field(default_factory=list)
    ran: bool = True  # False: not run because an earlier proof already failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts(run: TestRun | None) -> dict[str, int]:
    if run is None:
        return {}
    c = run.counts
    return {"passed": c.passed, "failed": c.failed, "errors": c.errors, "skipped": c.skipped, "total": c.total}


def new_tests_ran(with_feature: TestRun) -> Proof:
    if with_feature.counts.total >= 1:
        return Proof(True, counts=_counts(with_feature))
    where = ("the JUnit report holds no test case" if with_feature.source == "junit"
             else "no JUnit report and no test summary in the output")
    return Proof(False, f"the new tests did not run: no test was counted ({where}; exit code "
                        f"{with_feature.exit_code})", _counts(with_feature))


def pass_with_feature(with_feature: TestRun) -> Proof:
    if with_feature.passed and with_feature.counts.total >= 1:
        return Proof(True, counts=_counts(with_feature))
    if with_feature.counts.total == 0:
        return Proof(False, "nothing to pass: no test was counted", _counts(with_feature))
    failing = f": {', '.join(with_feature.failing[:5])}" if with_feature.failing else ""
    return Proof(False, f"tests failed with the feature ({with_feature.summary()}){failing}",
                 _counts(with_feature))


def fail_without_feature(without: TestRun | None) -> Proof:
    if without is None:
        return Proof(False, "not run: the new tests do not pass with the feature", ran=False)
    if without.passed and without.counts.total >= 1:
        return Proof(False, f"the new tests pass without the feature ({without.counts.passed} passed with "
                            "tests.patch alone): they do not test it", _counts(without))
    if without.passed:
        # exit 0 and nothing counted: the tests did not run, so they did not fail either
        return Proof(False, "the run without the feature counted no test, so it proves nothing",
                     _counts(without))
    return Proof(True, counts=_counts(without))


@dataclass
class FeatureCheck:
    """Existing feature `feature`'s tests: on the base (its tests.patch alone) and with the new feature."""

    feature: int
    base: TestRun
    with_new: TestRun


def regressions(check: FeatureCheck) -> list[str] | None:
    """Tests of the existing feature that pass on the base but not with the new feature (pure).

    By name when both runs wrote JUnit reports; else by counts (a drop in passed tests or a rise
    in failures is one entry). None when the base run counted nothing: nothing to compare.
    """
    base, new = check.base, check.with_new
    if base.counts.total == 0:
        return None
    if new.timed_out:
        return [f"timed out ({new.summary()})"]
    if base.source == "junit" and new.source == "junit":
        broken = [name for name in new.failing if name not in set(base.failing)]
        if new.counts.total < base.counts.total:
            broken.append(f"{base.counts.total - new.counts.total} test(s) no longer collected")
        return broken
    b, n = base.counts, new.counts
    if n.passed < b.passed or n.failed + n.errors > b.failed + b.errors:
        return [f"{b.passed} passed, {b.failed + b.errors} failing on the base; "
                f"{n.passed} passed, {n.failed + n.errors} failing with the new feature"]
    return []


def existing_tests(checks: list[FeatureCheck] | None, not_run: str = "") -> Proof:
    if checks is None:
        return Proof(False, f"not run: {not_run}" if not_run else "not run", ran=False)
    detail, broken = [], []
    for check in checks:
        found = regressions(check)
        status = "not_checked" if found is None else ("broken" if found else "ok")
        entry = {"feature": check.feature, "status": status, "base": _counts(check.base),
                 "with_new_feature": _counts(check.with_new)}
        if found:
            entry["regressions"] = found[:20]
            broken.append(f"feature {check.feature} ({', '.join(found[:3])})")
        if found is None:
            entry["reason"] = f"its tests counted nothing on the base ({check.base.summary()})"
        detail.append(entry)
    checked = sum(1 for d in detail if d["status"] != "not_checked")
    counts = {"features": len(checks), "checked": checked, "broken": len(broken)}
    if broken:
        return Proof(False, "the feature breaks existing features' tests: " + "; ".join(broken), counts, detail)
    return Proof(True, counts=counts, detail=detail)


@dataclass
class Proofs:
    new_tests_ran: Proof
    pass_with_feature: Proof
    fail_without_feature: Proof
    existing_tests: Proof

    @property
    def ok(self) -> bool:
        return all(p.ok for p in (self.new_tests_ran, self.pass_with_feature, self.fail_without_feature,
                                  self.existing_tests))

    def reasons(self) -> list[str]:
        """The failing proofs' reasons, the first cause first; a missing test run explains the rest."""
        if not self.new_tests_ran.ok:
            return [self.new_tests_ran.reason]
        return [p.reason for p in (self.pass_with_feature, self.fail_without_feature, self.existing_tests)
                if not p.ok and p.ran]

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_dict()
                for name in ("new_tests_ran", "pass_with_feature", "fail_without_feature", "existing_tests")}
