"""The generator's handlers: one step per event through the FeatureGenerator port (its fake, which
passes the port's contract suite in tests/contract/test_generator_contract.py), the job's request
and prompt found in its stream. (The real steps against the scripted model server are in
tests/integration/test_generator_agent.py.)"""

from __future__ import annotations

import pytest

from services.generator.handlers import on_feature_generated, on_feature_generation_requested, on_feature_prompt_built
from services.generator.main import ROUTES
from shared.common.settings import Settings
from shared.engines.generator.attempt import options_for
from shared.events import Envelope, make_event, new_gen_stream
from shared.events.gen import FeatureGenerationRequested
from shared.events.registry import parse_payload
from shared.ports.errors import StepError
from shared.ports.generator import FeatureGenerator
from tests.support.fakes import FakeFeatureGenerator, InMemoryEventStore, fake_deps

pytestmark = pytest.mark.unit


async def test_each_step_gets_the_request_and_what_the_steps_before_it_made(tmp_path):
    store, generator = InMemoryEventStore(), FakeFeatureGenerator()
    assert isinstance(generator, FeatureGenerator)
    deps = fake_deps(tmp_path, {}, store=store, generator=generator)
    stream = new_gen_stream()
    request = make_event(FeatureGenerationRequested(task_dir=str(tmp_path), output_dir=str(tmp_path / "out"),
                                                    attempt=2, mutants=9), stream)
    await store.append(stream, [request], 0)
    event: Envelope = request
    for handler in (on_feature_generation_requested, on_feature_prompt_built, on_feature_generated):
        (event,) = await handler(event, deps)
        assert event.causation_id is not None and event.stream_id == stream
        await store.append(stream, [event])
    assert [c[0] for c in generator.calls] == ["prompt", "agent", "validate"]
    assert all(c[1] == request.data for c in generator.calls)  # the request as stored, options included
    _, _, prompt, generated = generator.calls[2]
    assert prompt.prompt == f"write a feature for {tmp_path}" and generated.steps == 2
    assert event.type == "FeatureValidated" and event.data.valid


def test_the_consumer_owns_one_bead_per_step():
    assert [(r.event_type, r.step) for r in ROUTES] == [
        ("FeatureGenerationRequested", "prompt"), ("FeaturePromptBuilt", "agent"), ("FeatureGenerated", "validate")]


async def test_a_missing_task_dir_is_a_step_error_for_the_consumer_to_record(tmp_path):
    deps = fake_deps(tmp_path, {}, generator=FakeFeatureGenerator())
    request = make_event(FeatureGenerationRequested(task_dir=str(tmp_path / "missing"), output_dir=str(tmp_path),
                                                    attempt=3), new_gen_stream())
    with pytest.raises(StepError, match="task directory not found"):
        await on_feature_generation_requested(request, deps)


def test_options_take_the_request_and_fall_back_to_the_settings_model():
    settings = Settings(OPENAI_MODEL="default-model", OPENAI_BASE_URL="http://model:1/v1", OPENAI_API_KEY="k")
    asked = FeatureGenerationRequested(task_dir="t", output_dir="o", model="asked", step_limit=7, mutants=9,
                                       min_mutation_score=0.8, all_proofs=True, price=(1.0, 4.0), token_limit=5000)
    options = options_for(asked, settings)
    assert (options.model, options.step_limit) == ("asked", 7)
    assert (options.mutants, options.min_mutation_score, options.all_proofs) == (9, 0.8, True)
    assert (options.price, options.token_limit) == ((1.0, 4.0), 5000)
    default = options_for(FeatureGenerationRequested(task_dir="t", output_dir="o"), settings)
    assert (default.model, default.base_url, default.api_key) == ("default-model", "http://model:1/v1", "k")
    assert (default.mutants, default.min_mutation_score, default.price, default.token_limit) == (6, 0.5, None, None)


def test_requests_and_generated_events_stored_before_the_new_fields_still_decode():
    old_request = {"task_dir": "t", "output_dir": "o", "attempt": 1, "model": None, "backend": "auto",
                   "step_limit": 30, "cost_limit_usd": 1.0, "min_conflicts": 1, "feature": None,
                   "agent_network": False, "schema_version": 1}
    request = parse_payload("FeatureGenerationRequested", old_request)
    assert (request.mutants, request.all_proofs, request.price, request.token_limit) == (6, False, None, None)
    old_generated = {"feature_patch": "f", "tests_patch": "t", "feature_md": "m", "cost_usd": 0.1, "steps": 3,
                     "trajectory_path": None, "schema_version": 1}
    generated = parse_payload("FeatureGenerated", old_generated)
    assert generated.submitted and generated.split_failure == "" and generated.dropped == []
