"""What makes a generated feature valid: five proofs about its tests, each decided here (pure).

1. `new_tests_ran`: the tests the tests.patch adds or changes (`newtests`) were collected and run
   by the task's runner; a `def test_…` it adds that no session collected fails the proof. Tests
   already in the file do not count. Runners without the pytest plugin's records fall back to
   "at least one test was counted".
2. `pass_with_feature`: that run passed (exit 0, no failures, no errors, no timeout).
3. `fail_without_feature`: the new tests do not pass with tests.patch alone; the detail says
   whether they failed on behaviour or only on a missing name (an import error proves nothing).
4. `kills_mutants`: with the feature's new names present but one added line mutated (`mutate`),
   the new tests fail: killed/total must reach the minimum score. This is the proof that the
   tests check behaviour.
5. `existing_tests`: the base's own tests (the task's test files, unchanged) still pass with the
   candidate, and each existing feature's tests still pass with that feature and the candidate
   applied together. A comparison that cannot be made is "not checkable" with its reason, never
   ok; the proof needs at least one comparison made and none broken.

Proofs run in that order and stop at the first that fails (unless all are asked for); a proof
not run says so. Each carries its counts and, when it fails, the reason; result.json holds all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from shared.policy.generation.counts import TestCounts
from shared.policy.generation.newtests import NewTests, Records, failed_by_missing_name

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
    records: Records | None = None  # per-test outcomes from the pytest plugin, when it ran

    def summary(self) -> str:
        c = self.counts
        why = "timed out" if self.timed_out else f"exit code {self.exit_code}"
        return f"{why}; {c.passed} passed, {c.failed} failed, {c.errors} errors (counts from {self.source})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("records")
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


def not_run(reason: str = "an earlier proof failed") -> Proof:
    return Proof(False, f"not run: {reason}", ran=False)


def new_tests_ran(with_feature: TestRun, new: NewTests | None = None) -> Proof:
    """`new` is None when the run left no per-test records (not pytest): counts decide."""
    counts = _counts(with_feature)
    if new is not None:
        counts["new"] = len(new.ids)
        detail = [{"new_test": i} for i in new.ids] + [{"never_run": n} for n in new.not_run]
        if new.not_run:
            return Proof(False, f"the new tests did not all run under the task's runner: "
                                f"{', '.join(new.not_run[:5])} never collected (in a file the runner does "
                                f"not run?)", counts, detail)
        if new.ids:
            return Proof(True, counts=counts, detail=detail)
        return Proof(False, "the new tests did not run: no collected test holds a line the tests patch adds "
                            f"({with_feature.counts.total} other test(s) ran; exit code {with_feature.exit_code})",
                     counts, detail)
    if with_feature.counts.total >= 1:
        return Proof(True, counts=counts)
    where = ("the JUnit report holds no test case" if with_feature.source == "junit"
             else "no JUnit report and no test summary in the output")
    return Proof(False, f"the new tests did not run: no test was counted ({where}; exit code "
                        f"{with_feature.exit_code})", counts)


def pass_with_feature(with_feature: TestRun) -> Proof:
    if with_feature.passed and with_feature.counts.total >= 1:
        return Proof(True, counts=_counts(with_feature))
    if with_feature.counts.total == 0:
        return Proof(False, "nothing to pass: no test was counted", _counts(with_feature))
    failing = f": {', '.join(with_feature.failing[:5])}" if with_feature.failing else ""
    return Proof(False, f"tests failed with the feature ({with_feature.summary()}){failing}",
                 _counts(with_feature))


def fail_without_feature(without: TestRun | None, new_ids: list[str] | None = None) -> Proof:
    """With `new_ids` (and records in `without`), only the new tests decide; else the whole run."""
    if without is None:
        return not_run()
    records = without.records
    if new_ids and records is not None:
        outcomes = {i: (records.tests[i].outcome if i in records.tests else "not collected") for i in new_ids}
        counts = {**_counts(without), "new": len(new_ids),
                  "new_passed": sum(1 for o in outcomes.values() if o == "passed")}
        if all(o == "passed" for o in outcomes.values()):
            return Proof(False, f"the new tests pass without the feature ({len(new_ids)} passed with tests.patch "
                                "alone): they do not test it", counts)
        how = "missing names only" if failed_by_missing_name(records, new_ids) else "assertion"
        detail = [{"test": i, "outcome": o, "exception": records.tests[i].exception if i in records.tests else ""}
                  for i, o in outcomes.items()]
        return Proof(True, f"failed by {how}", {**counts, "by_assertion": int(how == "assertion")}, detail)
    if without.passed and without.counts.total >= 1:
        return Proof(False, f"the new tests pass without the feature ({without.counts.passed} passed with "
                            "tests.patch alone): they do not test it", _counts(without))
    if without.passed:
        # exit 0 and nothing counted: the tests did not run, so they did not fail either
        return Proof(False, "the run without the feature counted no test, so it proves nothing",
                     _counts(without))
    return Proof(True, counts=_counts(without))


@dataclass
class MutantResult:
    description: str
    killed: bool
    why: str = ""  # which new test failed, or that they all passed


def kills_mutants(results: list[MutantResult], min_score: float, not_checkable: str = "") -> Proof:
    """The new tests fail on at least `min_score` of the mutants (pure). No mutant: not checkable."""
    if not results:
        return Proof(False, f"not checkable: {not_checkable or 'no mutant of the added lines'}",
                     {"killed": 0, "total": 0})
    killed = sum(r.killed for r in results)
    counts = {"killed": killed, "total": len(results)}
    detail = [asdict(r) for r in results]
    if killed / len(results) >= min_score and killed > 0:
        return Proof(True, f"{killed}/{len(results)} mutants killed", counts, detail)
    survivors = [r.description for r in results if not r.killed]
    return Proof(False, f"the new tests do not check the feature's behaviour: {killed}/{len(results)} mutants "
                        f"killed, {min_score:.0%} required; they pass with {'; '.join(survivors[:3])}",
                 counts, detail)


@dataclass
class Comparison:
    """One before/after comparison of existing tests: `what` ("base's own tests", "feature 2")."""

    what: str
    status: Literal["ok", "broken", "not checkable"]
    reason: str = ""
    broken: list[str] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)


def _passing(run: TestRun) -> set[str] | None:
    if run.records is None:
        return None
    return {i for i, r in run.records.tests.items() if r.outcome == "passed"}


def compare(what: str, before: TestRun, after: TestRun) -> Comparison:
    """Tests that pass before and not after (pure). Not checkable when nothing passes before."""
    b, a = _counts(before), _counts(after)
    passing = _passing(before)
    if (passing is not None and not passing) or before.counts.passed == 0:
        return Comparison(what, "not checkable", f"nothing passes before ({before.summary()})", before=b, after=a)
    if after.timed_out:
        return Comparison(what, "broken", f"timed out ({after.summary()})", [f"timed out ({after.summary()})"], b, a)
    now = _passing(after)
    if passing is not None and now is not None:
        broken = sorted(passing - now)
    elif before.source == "junit" and after.source == "junit":
        broken = [name for name in after.failing if name not in set(before.failing)]
        if after.counts.total < before.counts.total:
            broken.append(f"{before.counts.total - after.counts.total} test(s) no longer collected")
    elif after.counts.passed < before.counts.passed or (after.counts.failed + after.counts.errors
                                                         > before.counts.failed + before.counts.errors):
        broken = [f"{b['passed']} passed, {b['failed'] + b['errors']} failing before; "
                  f"{a['passed']} passed, {a['failed'] + a['errors']} failing after"]
    else:
        broken = []
    if broken:
        return Comparison(what, "broken", ", ".join(broken[:3]), broken[:20], b, a)
    return Comparison(what, "ok", before=b, after=a)


def existing_tests(comparisons: list[Comparison] | None, not_run_reason: str = "") -> Proof:
    if comparisons is None:
        return not_run(not_run_reason or "an earlier proof failed")
    detail = [asdict(c) for c in comparisons]
    broken = [c for c in comparisons if c.status == "broken"]
    checked = [c for c in comparisons if c.status != "not checkable"]
    counts = {"compared": len(comparisons), "checked": len(checked), "broken": len(broken),
              "not_checkable": len(comparisons) - len(checked)}
    if broken:
        return Proof(False, "the feature breaks existing tests: "
                            + "; ".join(f"{c.what} ({c.reason})" for c in broken), counts, detail)
    if not checked:
        why = "; ".join(f"{c.what}: {c.reason}" for c in comparisons) or "nothing to compare"
        return Proof(False, f"not checkable: {why}", counts, detail)
    return Proof(True, counts=counts, detail=detail)


PROOF_NAMES = ("new_tests_ran", "pass_with_feature", "fail_without_feature", "kills_mutants", "existing_tests")


@dataclass
class Proofs:
    new_tests_ran: Proof
    pass_with_feature: Proof
    fail_without_feature: Proof
    kills_mutants: Proof
    existing_tests: Proof

    def all(self) -> list[tuple[str, Proof]]:
        return [(name, getattr(self, name)) for name in PROOF_NAMES]

    @property
    def ok(self) -> bool:
        return all(p.ok for _, p in self.all())

    @property
    def mutation_score(self) -> tuple[int, int] | None:
        c = self.kills_mutants.counts
        return (c["killed"], c["total"]) if self.kills_mutants.ran and "total" in c else None

    def reasons(self) -> list[str]:
        """The failing proofs' reasons, each named by its proof, the first cause first; a missing
        test run explains the rest."""
        named = [(n, p) for n, p in self.all() if not p.ok and p.ran]
        if not self.new_tests_ran.ok:
            named = [("new_tests_ran", self.new_tests_ran)]
        return [f"{n.replace('_', ' ')}: {p.reason}" for n, p in named]

    def to_dict(self) -> dict[str, Any]:
        return {name: proof.to_dict() for name, proof in self.all()}
