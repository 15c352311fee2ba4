"""The tester's handler against in-memory fakes of its ports: no servers, no pytest run (the fake
sandbox answers from what it finds in the working copy it is pointed at)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.tester.handlers import on_changes_committed
from shared.ports.errors import StepError
from tests.support.fakes import FakeEngine, FakeSandbox, fake_deps
from tests.support.runs import committed_run

pytestmark = pytest.mark.unit

REPO = {"calc.py": "def add(a, b):\n    return a + b\n", "tests/test_calc.py": "..."}
GENERATED = "tests/test_generated_features.py"


def outcome(cwd: Path, cmd: list[str]) -> tuple[int, int]:
    """(passed, failed): the own suite has one test that fails once calc.py is broken; the
    generated group passes."""
    if GENERATED in cmd:
        return 1, 0
    broken = "BUG" in (cwd / "calc.py").read_text()
    return (2, 1) if broken else (3, 0)


async def test_own_suite_before_and_after_and_the_generated_group(tmp_path):
    sandbox = FakeSandbox(outcome)
    engine = FakeEngine(tests={"features": {GENERATED: "def test_x():\n    assert True\n"}})
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=engine, sandbox=sandbox)
    event = await committed_run(deps, {"one": {"calc.py": "def add(a, b):\n    return a + b  # tidy\n"}})

    out = await on_changes_committed(event, deps)

    assert [e.type for e in out] == ["LlmCallRecorded", "TestsGenerated", "TestsCompleted"]
    generated, done = out[1].data, out[2].data
    assert generated.groups == {"features": [GENERATED]} and GENERATED in generated.files
    assert (done.own_before.passed, done.own_after.passed, done.regressed) == (3, 3, False)
    assert [(g.group, g.passed, g.failed) for g in done.groups] == [("features", 1, 0)]
    assert done.own_after.output.startswith("python: ")  # which interpreter ran, and why
    assert engine.seen == [("write_tests", ["one"])]  # only improvements that were applied
    ran_in = {cwd.name for _, cwd in sandbox.calls}
    assert ran_in == {f"{event.stream_id}-test-base", f"{event.stream_id}-test-head"}
    assert not deps.workspace.live


async def test_a_change_that_breaks_the_own_suite_is_a_regression(tmp_path):
    deps = fake_deps(tmp_path, {"demo": REPO}, sandbox=FakeSandbox(outcome))
    event = await committed_run(deps, {"one": {"calc.py": "def add(a, b):\n    return a - b  # BUG\n"}})

    done = (await on_changes_committed(event, deps))[-1].data

    assert (done.own_before.failed, done.own_after.failed, done.regressed) == (0, 1, True)


async def test_a_failing_engine_leaves_neither_copy(tmp_path):
    engine = FakeEngine()
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=engine, sandbox=FakeSandbox(outcome))
    event = await committed_run(deps, {"one": {"calc.py": "x = 1\n"}})
    engine.fail = "write_tests"
    with pytest.raises(StepError):
        await on_changes_committed(event, deps)
    assert not deps.workspace.live
