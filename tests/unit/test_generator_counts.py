"""Test counts parsed from real runner output: pytest, go test, cargo test, jest, vitest."""

import pytest

from shared.policy.generation.counts import parse_test_counts

pytestmark = pytest.mark.unit

# pytest -q, captured from the fixture task's run_tests.sh with a feature that breaks multiply
PYTEST_Q = """..F..                                                                    [100%]
=================================== FAILURES ===================================
________________________________ test_multiply _________________________________

    def test_multiply():
>       assert multiply(4, 3) == 12
E       assert 13 == 12
E        +  where 13 = multiply(4, 3)

tests/test_ops.py:13: AssertionError
=========================== short test summary info ============================
FAILED tests/test_ops.py::test_multiply - assert 13 == 12
1 failed, 4 passed in 0.06s
"""

# pytest -v as CooperBench runners call it, twice in one run (main suite, then the patched files)
PYTEST_V_TWICE = """tests/clients/test_cache.py::test_hit PASSED                               [ 50%]
tests/clients/test_cache.py::test_miss PASSED                              [100%]

============================== 2 passed in 0.31s ===============================
tests/test_new.py::test_a PASSED                                           [ 33%]
tests/test_new.py::test_b FAILED                                           [ 66%]
tests/test_new.py::test_c ERROR                                            [100%]
=================== 1 failed, 1 passed, 1 skipped, 1 error in 0.12s ===================
"""

# cargo test, captured from a real crate with a passing, a failing and an ignored test
CARGO = """running 3 tests
test tests::adds ... ok
test tests::slow ... ignored
test tests::adds_wrong ... FAILED

failures:

---- tests::adds_wrong stdout ----

thread 'tests::adds_wrong' (17866) panicked at src/lib.rs:9:23:
assertion `left == right` failed
  left: 4
 right: 5

failures:
    tests::adds_wrong

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.21s

error: test failed, to rerun pass `--lib`
"""

CARGO_TWO_TARGETS = """running 2 tests
test a ... ok
test b ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running tests/integration.rs (target/debug/deps/integration-5d2c)

running 1 test
test it_works ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests adder

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
"""

# go test -v with a failing subtest and a skip
GO_V = """=== RUN   TestAdd
--- PASS: TestAdd (0.00s)
=== RUN   TestDivide
=== RUN   TestDivide/by_zero
    calc_test.go:21: expected an error
--- FAIL: TestDivide (0.00s)
    --- FAIL: TestDivide/by_zero (0.00s)
=== RUN   TestSlow
    calc_test.go:30: skipping in short mode
--- SKIP: TestSlow (0.00s)
FAIL
FAIL\texample.com/calc\t0.002s
FAIL
"""

GO_PLAIN = """ok  \tgithub.com/go-chi/chi/v5\t0.012s
ok  \tgithub.com/go-chi/chi/v5/middleware\t(cached)
FAIL\tgithub.com/go-chi/chi/v5/render\t0.004s
"""

JEST = """PASS  src/foo.test.ts
FAIL  src/bar.test.ts
  \u2715  bar > does the thing (12 ms)
Test Suites: 1 failed, 1 passed, 2 total
Tests:       1 failed, 1 skipped, 9 passed, 11 total
Snapshots:   0 total
Time:        2.589 s, estimated 3 s
Ran all test suites.
"""

VITEST = """ Test Files  1 failed | 6 passed (7)
      Tests  3 failed | 240 passed (243)
   Start at  10:00:00
   Duration  4.21s
"""


@pytest.mark.parametrize(
    ("output", "framework", "passed", "failed", "errors", "skipped"),
    [
        (PYTEST_Q, "pytest", 4, 1, 0, 0),
        (PYTEST_V_TWICE, "pytest", 3, 1, 1, 1),
        (CARGO, "cargo test", 1, 1, 0, 1),
        (CARGO_TWO_TARGETS, "cargo test", 3, 0, 0, 0),
        (GO_V, "go test", 1, 2, 0, 1),
        (GO_PLAIN, "go test", 2, 1, 0, 0),
        (JEST, "jest", 9, 1, 0, 1),
        (VITEST, "jest", 240, 3, 0, 0),
    ],
)
def test_counts_from_real_outputs(output, framework, passed, failed, errors, skipped):
    counts = parse_test_counts(output)
    assert (counts.framework, counts.passed, counts.failed, counts.errors, counts.skipped) == (
        framework, passed, failed, errors, skipped)


def test_colour_codes_do_not_hide_the_summary():
    coloured = "\x1b[31m\x1b[1m1 failed\x1b[0m, \x1b[32m4 passed\x1b[0m\x1b[31m in 0.06s\x1b[0m\n"
    counts = parse_test_counts(coloured)
    assert (counts.passed, counts.failed) == (4, 1)


def test_output_without_a_summary_has_no_counts():
    counts = parse_test_counts("error: Failed to apply test patch.\n")
    assert not counts.found
    assert counts.total == 0
