"""The Suites port: one contract suite, run against the real SandboxSuites (pytest in a real local
sandbox, with the target's interpreter) and the fake the handler unit tests use (which counts the
tests in the files instead of running them)."""

from __future__ import annotations

import pytest

from shared.adapters.sandbox import LocalSandbox
from shared.engines.suites import SandboxSuites
from shared.ports.suites import Suites
from tests.conftest import make_git_repo
from tests.support.fakes import FakeSuites

OWN = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": ("from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
                           "def test_wrong():\n    assert False\n"),
}
GENERATED = "tests/test_generated_features.py"


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration),
                        pytest.param("fake", marks=pytest.mark.unit)])
def suites(request, tmp_path) -> Suites:
    return SandboxSuites(LocalSandbox(), tmp_path / "home") if request.param == "real" else FakeSuites()


def test_implements_the_port(suites):
    assert isinstance(suites, Suites)


async def test_the_own_suite_and_a_generated_group_are_counted(suites, tmp_path):
    before = make_git_repo(tmp_path / "before", OWN)
    after = make_git_repo(tmp_path / "after", OWN)
    suite_before, suite = await suites.prepare(before, after)
    assert suite_before.language == suite.language == "python"

    own = await suites.run_own(before, suite_before)
    assert (own.group, own.total, own.passed, own.failed) == ("own", 2, 1, 1)

    (after / GENERATED).write_text("from calc import add\n\n\ndef test_one():\n    assert add(0, 0) == 0\n\n\n"
                                   "def test_two():\n    assert add(2, 2) == 4\n")
    generated = await suites.run_generated(after, [GENERATED], "features", suite)
    assert (generated.group, generated.total, generated.passed, generated.failed) == ("features", 2, 2, 0)
