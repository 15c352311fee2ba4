"""The generator's handler against in-memory fakes of its ports: the paths that need no model.
(A whole attempt against the scripted model server is in tests/integration/test_generator_agent.py.)"""

from __future__ import annotations

import pytest

from services.generator.handlers import on_feature_generation_requested, options_for
from shared.common.settings import Settings
from shared.events import make_event, new_gen_stream
from shared.events.gen import FeatureGenerationRequested
from tests.support.fakes import fake_deps

pytestmark = pytest.mark.unit


async def test_a_missing_task_dir_fails_the_step_and_the_job_with_a_reason(tmp_path):
    deps = fake_deps(tmp_path, {})
    request = make_event(FeatureGenerationRequested(task_dir=str(tmp_path / "missing"), output_dir=str(tmp_path),
                                                    attempt=3), new_gen_stream())

    events = await on_feature_generation_requested(request, deps)

    assert [e.type for e in events] == ["StepFailed", "PipelineFailed"]
    failed, job = events[0].data, events[1].data
    assert (failed.step, failed.attempt) == ("prompt", 3) and "task directory not found" in failed.error  # a job bead
    assert job.error in failed.error
    assert all(e.causation_id == request.event_id and e.stream_id == request.stream_id for e in events)
    assert not (tmp_path / "attempt_3").exists()


def test_options_take_the_request_and_fall_back_to_the_settings_model():
    settings = Settings(OPENAI_MODEL="default-model", OPENAI_BASE_URL="http://model:1/v1", OPENAI_API_KEY="k")
    asked = FeatureGenerationRequested(task_dir="t", output_dir="o", model="asked", step_limit=7)
    assert (options_for(asked, settings).model, options_for(asked, settings).step_limit) == ("asked", 7)
    default = options_for(FeatureGenerationRequested(task_dir="t", output_dir="o"), settings)
    assert (default.model, default.base_url, default.api_key) == ("default-model", "http://model:1/v1", "k")
