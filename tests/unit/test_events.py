"""The event model: round trips, registry, subjects, upcasters and clear errors."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.events import (
    Envelope,
    ImprovementsSuggested,
    MalformedEvent,
    PipelineRequested,
    StepFailed,
    StepStarted,
    UnknownEventType,
    make_event,
    new_gen_stream,
    new_run_stream,
    registered_types,
)
from shared.events.registry import Payload, event, parse_payload, subject_for, upcaster

pytestmark = pytest.mark.unit


def test_every_design_event_is_registered():
    expected = {
        "PipelineRequested", "StepStarted", "StepCompleted", "StepFailed", "StepSkipped", "RepoAnalyzed",
        "ImprovementsSuggested", "ChangeApplied", "ChangeRejected", "ChangesCommitted", "ChangesReviewed",
        "TestsGenerated", "TestsCompleted", "MergeCompleted", "DocsUpdated", "PipelineCompleted",
        "PipelineFailed", "LlmCallRecorded", "FeatureGenerationRequested", "FeaturePromptBuilt",
        "FeatureGenerated", "FeatureValidated",
    }
    assert expected <= set(registered_types())


def test_round_trip_keeps_the_typed_payload():
    stream = new_run_stream()
    original = make_event(ImprovementsSuggested(improvements=[
        {"id": "security-1", "category": "security", "title": "t", "rationale": "r", "files": ["a.py"]}]), stream)
    back = Envelope.from_json(original.to_json())
    assert back == original
    assert back.data.improvements[0].files == ["a.py"]


def test_subjects_are_derived_from_type_and_stream_kind():
    assert make_event(PipelineRequested(repo="/r"), "run-1").subject() == "pilot.run.pipeline_requested"
    assert make_event(StepFailed(step="agent", error="x"), new_gen_stream()).subject("p") == "p.gen.step_failed"
    assert subject_for("RepoAnalyzed", "run-x") == "pilot.run.repo_analyzed"


def test_causation_correlation_and_trace_follow_the_cause():
    cause = make_event(PipelineRequested(repo="/r"), "run-1", metadata={"traceparent": "00-abc-def-01"})
    child = make_event(StepFailed(step="analyze", error="e"), "run-1", cause=cause, service="analyzer")
    assert child.causation_id == cause.event_id
    assert child.correlation_id == "run-1"
    assert child.traceparent == "00-abc-def-01"
    assert child.metadata["service"] == "analyzer"


def test_unknown_type_is_named():
    with pytest.raises(UnknownEventType, match="'Nope'"):
        Envelope.from_json(json.dumps({"type": "Nope", "stream_id": "run-1", "data": {}}))


def test_malformed_payload_names_type_and_fields():
    raw = json.dumps({"type": "PipelineRequested", "stream_id": "run-1", "data": {"threshold": "high"}})
    with pytest.raises(MalformedEvent) as err:
        Envelope.from_json(raw)
    assert "PipelineRequested" in str(err.value)
    assert "'repo'" in str(err.value) and "'threshold'" in str(err.value)


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", json.dumps({"stream_id": "run-1", "data": {}})])
def test_garbage_is_rejected_clearly(raw):
    with pytest.raises(MalformedEvent):
        Envelope.from_json(raw)


def test_payloads_are_frozen_and_reject_unknown_fields():
    p = PipelineRequested(repo="/r")
    with pytest.raises(ValidationError):
        p.repo = "/other"  # type: ignore[misc]
    with pytest.raises(MalformedEvent, match="surprise"):
        parse_payload("PipelineRequested", {"repo": "/r", "surprise": 1})


def test_upcasters_lift_old_schema_versions():
    @event("run", version=2)
    class _RenamedThing(Payload):
        name: str
        size: int = 0

    @upcaster("_RenamedThing", 1)
    def _v1_to_v2(data):
        data = dict(data)
        data["name"] = data.pop("title")
        return data

    old = {"type": "_RenamedThing", "stream_id": "run-1", "metadata": {"schema_version": 1},
           "data": {"schema_version": 1, "title": "legacy"}}
    lifted = Envelope.from_dict(old)
    assert lifted.data.name == "legacy" and lifted.data.schema_version == 2


def test_stored_is_model_copy_with_positions_and_stays_frozen():
    event = make_event(StepStarted(step="analyze", attempt=1), "run-x", service="tester")
    fast = event.stored(3, 42)
    slow = event.model_copy(update={"version": 3, "global_position": 42})
    assert fast == slow and fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json() == slow.model_dump_json()
    assert Envelope.from_json(fast.to_json()) == fast
    assert event.version is None and event.global_position is None  # the original is untouched
    with pytest.raises(ValidationError):
        fast.version = 4


def test_every_payload_model_builds():
    """The models are built on first use (defer_build), not at import: a field pydantic cannot
    validate shows here, not in the first service that makes such an event."""
    for name, cls in [("Envelope", Envelope), *registered_types().items()]:
        assert cls.model_rebuild(force=True), name
