"""The FeatureGenerator port: one contract suite, run against the real generator (the real openai
client over HTTP to the scripted model server, a real checkout of the fixture task, the real
proofs and merges in a local sandbox) and the fake the handler unit tests use. What the suite
checks is what every generator promises: three steps that turn a request into a validated feature
with its tests, the attempt folder written, a missing task directory a StepError, and an attempt
that failed a result rather than an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.common.settings import Settings
from shared.engines.generator.attempt import Generator
from shared.events.gen import FeatureGenerated, FeatureGenerationRequested, FeaturePromptBuilt, FeatureValidated
from shared.ports.errors import StepError
from shared.ports.generator import FeatureGenerator
from tests.support.fakes import FakeFeatureGenerator
from tests.support.generator_script import feature_steps
from tests.support.model_server import ScriptedModelServer
from tests.support.task_fixture import make_task


@pytest.fixture(
    params=[
        pytest.param("real", marks=pytest.mark.integration),
        pytest.param("fake", marks=pytest.mark.unit),
    ]
)
def subject(request, tmp_path):
    """(generator, task directory) for one implementation."""
    if request.param == "fake":
        (tmp_path / "task").mkdir()
        yield FakeFeatureGenerator(), tmp_path / "task"
        return
    with ScriptedModelServer() as server:
        # The agent writes the feature and its tests and submits (no test run of its own, to keep
        # this suite short: the validate step runs them).
        write_feature, write_tests, _run_tests, submit = feature_steps()
        for reply in (write_feature, write_tests, submit):
            server.add(lambda _request: True, reply, times=1)
        settings = Settings(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="test-key",
                            OPENAI_MODEL="scripted-model", REPO_PILOT_HOME=tmp_path / "home")
        yield Generator(settings), make_task(tmp_path / "fixture").path


def ask(task_dir: Path, out: Path, **kw) -> FeatureGenerationRequested:
    # One mutant: the proof still runs, on the fewest test runs.
    return FeatureGenerationRequested(task_dir=str(task_dir), output_dir=str(out), backend="local", step_limit=5,
                                      mutants=1, **kw)


def test_implements_the_port(subject):
    generator, _ = subject
    assert isinstance(generator, FeatureGenerator)


async def test_three_steps_make_a_validated_feature_with_tests_and_write_the_attempt_folder(subject, tmp_path):
    generator, task_dir = subject
    request = ask(task_dir, tmp_path / "out", attempt=2)
    prompt = await generator.build_prompt(request)
    assert isinstance(prompt, FeaturePromptBuilt) and prompt.prompt.strip()

    generated = await generator.generate(request, prompt)
    assert isinstance(generated, FeatureGenerated) and generated.submitted
    assert generated.feature_patch.strip() and generated.tests_patch.strip() and generated.feature_md.strip()

    validated = await generator.validate(request, prompt, generated)
    assert isinstance(validated, FeatureValidated)
    assert validated.valid and validated.tests_passed, validated.reason
    folder = tmp_path / "out" / "attempt_2"
    assert (folder / "feature.patch").read_text() == generated.feature_patch
    assert (folder / "tests.patch").read_text() == generated.tests_patch
    assert json.loads((folder / "result.json").read_text())["valid"] is True


async def test_a_missing_task_directory_is_a_step_error(subject, tmp_path):
    generator, _ = subject
    with pytest.raises(StepError, match="task directory not found"):
        await generator.build_prompt(ask(tmp_path / "missing", tmp_path / "out"))


async def test_an_attempt_that_failed_is_an_invalid_result_with_a_reason_not_an_error(subject, tmp_path):
    generator, task_dir = subject
    request = ask(task_dir, tmp_path / "out")
    prompt = await generator.build_prompt(request)
    nothing = FeatureGenerated(feature_patch="", tests_patch="", feature_md="", submitted=False,
                               stop_reason="step_limit", split_failure="the agent changed nothing")
    validated = await generator.validate(request, prompt, nothing)
    assert not validated.valid and "changed nothing" in validated.reason
    assert json.loads((tmp_path / "out" / "attempt_1" / "result.json").read_text())["valid"] is False
