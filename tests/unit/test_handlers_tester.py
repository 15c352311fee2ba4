"""The tester's handler against in-memory fakes of its ports: no servers, no pytest run (the fake
suites count the tests in the files of the working copy they are pointed at)."""

from __future__ import annotations

import pytest

from services.tester.handlers import on_changes_committed
from shared.ports.errors import StepError
from tests.support.fakes import FakeEngine, FakeSuites, fake_deps
from tests.support.runs import committed_run

pytestmark = pytest.mark.unit

OWN_TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
REPO = {"calc.py": "def add(a, b):\n    return a + b\n", "tests/test_calc.py": OWN_TESTS}
GENERATED = "tests/test_generated_features.py"


async def test_own_suite_before_and_after_and_the_generated_group(tmp_path):
    suites = FakeSuites()
    engine = FakeEngine(tests={"features": {GENERATED: "def test_x():\n    assert True\n"}})
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=engine, suites=suites)
    event = await committed_run(deps, {"one": {"calc.py": "def add(a, b):\n    return a + b  # tidy\n"}})

    out = await on_changes_committed(event, deps)

    assert [e.type for e in out] == ["LlmCallRecorded", "TestsGenerated", "TestsCompleted"]
    generated, done = out[1].data, out[2].data
    assert generated.groups == {"features": [GENERATED]} and generated.files == {GENERATED: engine.tests["features"][GENERATED]}
    assert (done.own_before.passed, done.own_after.passed, done.regressed) == (1, 1, False)
    assert [(g.group, g.passed, g.failed) for g in done.groups] == [("features", 1, 0)]
    assert engine.seen == [("write_tests", ["one"])]  # only improvements that were applied
    base, head = f"{event.stream_id}-test-base", f"{event.stream_id}-test-head"
    assert suites.runs == [("own", base), ("own", head), ("features", head)]
    assert not deps.workspace.live


async def test_a_change_that_breaks_the_own_suite_is_a_regression(tmp_path):
    broken = OWN_TESTS.replace("assert add(1, 2) == 3", "assert False")
    deps = fake_deps(tmp_path, {"demo": REPO})
    event = await committed_run(deps, {"one": {"tests/test_calc.py": broken}})

    done = (await on_changes_committed(event, deps))[-1].data

    assert (done.own_before.failed, done.own_after.failed, done.regressed) == (0, 1, True)


async def test_a_generated_file_outside_the_copy_is_not_written_and_counts_as_an_error(tmp_path):
    engine = FakeEngine(tests={"security": {"../escape/test_x.py": "def test_x():\n    assert True\n"}})
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=engine)
    event = await committed_run(deps, {"one": {"calc.py": "def add(a, b):\n    return b + a\n"}})

    out = await on_changes_committed(event, deps)

    generated, done = out[-2].data, out[-1].data
    assert generated.files == {} and not (tmp_path / "ws" / "escape").exists()
    [group] = done.groups
    assert (group.group, group.errors) == ("security", 1) and group.output.startswith("not written: ")


async def test_a_failing_engine_leaves_neither_copy(tmp_path):
    engine = FakeEngine()
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=engine)
    event = await committed_run(deps, {"one": {"calc.py": "x = 1\n"}})
    engine.fail = "write_tests"
    with pytest.raises(StepError):
        await on_changes_committed(event, deps)
    assert not deps.workspace.live
