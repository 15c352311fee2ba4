"""The Sandbox port: one contract suite, run against the real local sandbox (a confined
subprocess), the Docker sandbox (a container per command; skipped, saying why, where no Docker
engine with the sandbox image answers) and the fake the handler unit tests use (which runs
nothing and counts the tests a pytest command names). tests/integration/test_sandbox.py checks
more of the real ones (streams, secrets, limits, timeouts)."""

from __future__ import annotations

import sys

import pytest

from shared.adapters.sandbox import DEFAULT_IMAGE, DockerSandbox, LocalSandbox, docker_available
from shared.adapters.junit import parse_junit
from shared.ports.sandbox import Sandbox, SandboxResult
from tests.support.fakes import FakeSandbox

TESTS = "def test_one():\n    assert 1 + 1 == 2\n\n\ndef test_two():\n    assert False\n"
PASSING = "def test_one():\n    assert True\n"


@pytest.fixture(params=[pytest.param("local", marks=pytest.mark.integration),
                        pytest.param("docker", marks=pytest.mark.integration),
                        pytest.param("fake", marks=pytest.mark.unit)])
def sandbox(request) -> Sandbox:
    if request.param == "docker":
        # Asked here, not at import: collecting the fake's unit cases must not ping for an engine.
        if not docker_available(DEFAULT_IMAGE):
            pytest.skip(f"no Docker engine answers here (or it lacks the sandbox image {DEFAULT_IMAGE})")
        return DockerSandbox(DEFAULT_IMAGE)
    return LocalSandbox() if request.param == "local" else FakeSandbox()


def pytest_cmd(*files: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=report.xml", *files]


def test_implements_the_port(sandbox):
    assert isinstance(sandbox, Sandbox)


async def test_a_pytest_run_in_cwd_writes_its_report_there_and_fails_when_a_test_fails(sandbox, tmp_path):
    (tmp_path / "test_mixed.py").write_text(TESTS)
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}

    result = await sandbox.run(pytest_cmd("test_mixed.py"), tmp_path, timeout=120, env=env)

    assert isinstance(result, SandboxResult) and not result.timed_out
    assert result.exit_code != 0
    report = parse_junit((tmp_path / "report.xml").read_text())
    assert (report.total, report.failed) == (2, 1)


async def test_a_passing_run_exits_zero(sandbox, tmp_path):
    (tmp_path / "test_ok.py").write_text(PASSING)
    result = await sandbox.run(pytest_cmd("test_ok.py"), tmp_path, timeout=120,
                               env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert result.exit_code == 0 and not result.timed_out
    assert parse_junit((tmp_path / "report.xml").read_text()).passed == 1
