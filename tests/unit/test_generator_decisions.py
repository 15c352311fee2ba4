"""Pure decisions of the generator: task files, hot spots, validity, backend, conflicts, agent cost."""

from pathlib import Path

import pytest

from shared.adapters.conflicts import conflict_hunks
from shared.engines.generator.agent import call_cost, truncate
from shared.policy.generation.verdict import decide, derive_local_script, pick_backend
from shared.events.gen import ConflictReport
from shared.policy.generation import proofs
from shared.policy.generation.counts import TestCounts
from shared.policy.generation.hotspots import compute_hotspots, rank_files, touched_ranges
from shared.policy.generation.proofs import TestRun
from shared.policy.generation.task import feature_title, parse_setup_sh
from shared.policy.generation.task import test_command_from_runner as command_from_runner
from shared.ports.errors import StepError

pytestmark = pytest.mark.unit

SETUP = """#!/bin/bash
set -e
REPO_NAME="chi-task56_main"
BASE_COMMIT="7f280968675bcc9f310008fc6b8abff0b923734c"
if [ ! -d "$REPO_NAME" ]; then
    git clone https://github.com/go-chi/chi "$REPO_NAME"
fi
git checkout "$BASE_COMMIT"
"""


def test_setup_sh_gives_url_and_base():
    assert parse_setup_sh(SETUP) == ("https://github.com/go-chi/chi", "7f280968675bcc9f310008fc6b8abff0b923734c")


def test_setup_sh_with_variable_url():
    text = 'REPO_URL="https://example.com/r.git"\nBASE_COMMIT=abc\ngit clone --depth 1 "$REPO_URL" repo\n'
    assert parse_setup_sh(text) == ("https://example.com/r.git", "abc")


def test_test_command_from_runner_skips_installs_and_echoes():
    runner = ('echo "Running tests..."\npip install -e ".[dev]"\n'
              'timeout 300 python -m pytest "tests/clients/test_cache.py" -v --tb=short\ngo test ./... -v\n')
    assert command_from_runner(runner) == (
        'timeout 300 python -m pytest "tests/clients/test_cache.py" -v --tb=short\ngo test ./... -v')


def test_feature_title():
    assert feature_title("**Title**: Add Editor Session Timeout\n\n**Description**: x") == "Add Editor Session Timeout"


def _patch(path: str, start: int, length: int) -> str:
    body = "".join(f" line{i}\n" for i in range(length - 1)) + "-old\n+new\n"
    return (f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
            f"@@ -{start},{length} +{start},{length} @@\n{body}")


def test_hotspots_merge_overlaps_and_rank_by_feature_count():
    patches = {1: _patch("a.py", 10, 5), 2: _patch("a.py", 12, 5), 3: _patch("a.py", 40, 3) + _patch("b.py", 1, 2)}
    spots = compute_hotspots(patches)
    assert [(s.path, s.start, s.end, s.features) for s in spots] == [
        ("a.py", 10, 16, [1, 2]), ("a.py", 40, 42, [3]), ("b.py", 1, 2, [3])]
    assert rank_files(patches) == [("a.py", [1, 2, 3]), ("b.py", [3])]


def test_hotspots_skip_a_patch_that_does_not_parse():
    assert compute_hotspots({1: "@@ not a diff", 2: _patch("a.py", 1, 2)})[0].features == [2]
    with pytest.raises(ValueError, match="not a unified diff"):
        touched_ranges("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n")


def _tests(ok: bool, source: str = "junit", failing: list[str] | None = None, code: int | None = None,
           **counts) -> TestRun:
    exit_code = code if code is not None else (0 if ok else 1)
    return TestRun(ok, TestCounts(framework="pytest", **counts), exit_code, "local", [], source=source,
                   failing=failing or [])


def _conflict(n: int, status: str = "conflict") -> ConflictReport:
    return ConflictReport(feature=n, status=status)


def _proofs(with_feature: TestRun, without: TestRun | None = None, checks=None) -> proofs.Proofs:
    without = without if without is not None else _tests(False, passed=4, failed=1)
    killed = proofs.kills_mutants([proofs.MutantResult("m", True)], 0.5)
    checks = checks if checks is not None else [proofs.compare("own", _tests(True, passed=4), _tests(True, passed=4))]
    return proofs.Proofs(proofs.new_tests_ran(with_feature), proofs.pass_with_feature(with_feature),
                         proofs.fail_without_feature(without), killed, proofs.existing_tests(checks))


def test_valid_needs_passing_tests_and_enough_conflicts():
    assert decide(_proofs(_tests(True, passed=5)), [_conflict(1), _conflict(2, "clean")], 1)[0]
    valid, reason = decide(_proofs(_tests(True, passed=5)), [_conflict(1), _conflict(2, "clean")], 2)
    assert not valid and "1 conflict(s)" in reason
    valid, reason = decide(_proofs(_tests(False, passed=4, failed=1)), [_conflict(1)], 1)
    assert not valid and "4 passed, 1 failed" in reason


def test_could_not_apply_never_counts_as_a_conflict():
    valid, reason = decide(_proofs(_tests(True, passed=1)), [_conflict(1, "could_not_apply")], 1)
    assert not valid and "could not apply against features [1]" in reason


def test_an_empty_test_run_proves_nothing():
    empty = _tests(True, source="none")  # exit 0, nothing counted
    found = _proofs(empty)
    assert not found.new_tests_ran.ok and not found.pass_with_feature.ok
    assert found.reasons() == ["new tests ran: " + found.new_tests_ran.reason]
    assert "no test was counted" in found.new_tests_ran.reason
    assert not decide(found, [_conflict(1)], 1)[0]


def test_tests_passing_without_the_feature_do_not_prove_it():
    found = _proofs(_tests(True, passed=5), without=_tests(True, passed=5))
    assert not found.fail_without_feature.ok and "pass without the feature" in found.fail_without_feature.reason
    assert found.fail_without_feature.counts["passed"] == 5
    nothing = _proofs(_tests(True, passed=5), without=_tests(True, source="none"))
    assert not nothing.fail_without_feature.ok  # exit 0 and nothing counted is no failure either


def test_existing_tests_compared_by_name_and_by_counts():
    base = _tests(False, passed=4, failed=1, failing=["t::test_rounding"])
    same = _tests(False, passed=4, failed=1, failing=["t::test_rounding"])
    worse = _tests(False, passed=3, failed=2, failing=["t::test_rounding", "t::test_subtract"])
    assert proofs.compare("f1", base, same).status == "ok"
    assert proofs.compare("f1", base, worse).broken == ["t::test_subtract"]
    console_base = _tests(False, source="console", passed=4, failed=1)
    console_worse = _tests(False, source="console", passed=3, failed=2)
    assert proofs.compare("f1", console_base, console_worse).status == "broken"
    nothing = proofs.compare("f1", _tests(True, source="none"), worse)
    assert nothing.status == "not checkable" and nothing.reason.startswith("nothing passes before")
    proof = proofs.existing_tests([proofs.compare("feature 1", base, worse), proofs.compare("feature 2", base, same)])
    assert not proof.ok and proof.counts == {"compared": 2, "checked": 2, "broken": 1, "not_checkable": 0}
    assert "feature 1 (t::test_subtract)" in proof.reason
    assert [d["status"] for d in proof.detail] == ["broken", "ok"]


def test_existing_tests_that_compare_nothing_are_not_checkable_never_ok():
    proof = proofs.existing_tests([proofs.Comparison("feature 2", "not checkable", "they conflict"),
                                   proofs.compare("own", _tests(False, code=2), _tests(False, code=2))])
    assert not proof.ok and proof.reason.startswith("not checkable: feature 2: they conflict; own: nothing passes")
    valid, reason = decide(_proofs(_tests(True, passed=5), checks=[
        proofs.Comparison("feature 2", "not checkable", "they conflict")]), [_conflict(2)], 1)
    assert not valid and "existing tests: not checkable: feature 2: they conflict" in reason


def test_backend_choice():
    assert pick_backend("auto", docker_answers=True, has_dockerfile=True) == "docker"
    assert pick_backend("auto", docker_answers=False, has_dockerfile=True) == "local"
    assert pick_backend("auto", docker_answers=True, has_dockerfile=False) == "local"
    assert pick_backend("local", docker_answers=True, has_dockerfile=True) == "local"
    with pytest.raises(StepError, match="no Docker engine"):
        pick_backend("docker", docker_answers=False, has_dockerfile=True)


def test_local_script_derived_from_runner():
    runner = 'cd /workspace/repo\ngit apply "/patches/$TEST_PATCH"\npip install -e .\npython -m pytest -v\n'
    script = derive_local_script(runner, Path("/tmp/r"), Path("/tmp/p"))
    assert script == ('cd /tmp/r\ngit apply "/tmp/p/$TEST_PATCH"\n# dropped for the local run: pip install -e .\n'
                      'python -m pytest -v\n')


def test_conflict_hunks_from_markers():
    text = "a\n<<<<<<< HEAD\nx\n=======\ny\n>>>>>>> new\nb\n<<<<<<< HEAD\n=======\nz\n>>>>>>> new\n"
    assert conflict_hunks(text) == ["<<<<<<< HEAD\nx\n=======\ny\n>>>>>>> new",
                                    "<<<<<<< HEAD\n=======\nz\n>>>>>>> new"]


def test_cost_by_longest_model_prefix():
    assert call_cost("gpt-4.1-mini-2025-04-14", 1_000_000, 0) == pytest.approx(0.40)
    assert call_cost("gpt-4.1", 0, 1_000_000) == pytest.approx(8.0)


def test_truncate_keeps_head_and_tail():
    out = truncate("a" * 50 + "b" * 50, 20)
    assert out.startswith("a" * 10) and out.endswith("b" * 10) and "80 characters cut" in out
    assert truncate("short", 20) == "short"
