"""The event model: envelope, typed payloads, registry, upcasters and subjects.

Where an event is declared: `run.py` (pipeline run stream), `gen.py` (generation stream).
"""

from shared.events.envelope import Envelope, make_event, new_event_id, new_gen_stream, new_run_stream
from shared.events.gen import *  # noqa: F403
from shared.events.registry import (
    MalformedEvent,
    Payload,
    UnknownEventType,
    parse_payload,
    registered_types,
    snake,
    subject_for,
    upcaster,
)
from shared.events.run import *  # noqa: F403
from shared.events.run import CATEGORIES, STEPS, Improvement, PatchEntry, ProjectChecks, TestGroupResult

# Which events end a stream: the one home of this rule (projector, sweeper, consumer, followers).
RUN_ENDS: tuple[str, ...] = ("PipelineCompleted", "PipelineFailed")
STREAM_ENDS: tuple[str, ...] = (*RUN_ENDS, "FeatureValidated")

__all__ = [
    "CATEGORIES",
    "STEPS",
    "Envelope",
    "Improvement",
    "MalformedEvent",
    "PatchEntry",
    "Payload",
    "ProjectChecks",
    "RUN_ENDS",
    "STREAM_ENDS",
    "TestGroupResult",
    "UnknownEventType",
    "make_event",
    "new_event_id",
    "new_gen_stream",
    "new_run_stream",
    "parse_payload",
    "registered_types",
    "snake",
    "subject_for",
    "upcaster",
]
