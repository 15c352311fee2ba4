"""The pure decisions of the consumer runtime: retry delays, outcomes, grouping, subjects."""

from __future__ import annotations

import pytest

from shared.events import PipelineRequested, StepStarted, UnknownEventType, make_event
from shared.messaging.bus import subjects_for
from shared.messaging.consumer import describe_error, failure_outcome, group_by_stream, retry_delay
from shared.messaging.relay import leader_lock_key, publish_headers

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1.0), (2, 5.0), (3, 15.0), (4, 30.0), (5, 30.0), (50, 30.0), (0, 1.0)],
)
def test_retry_delay_walks_the_backoff_then_repeats_the_last(attempt, expected):
    assert retry_delay(attempt, (1, 5, 15, 30)) == expected


def test_retry_delay_without_backoff_is_immediate():
    assert retry_delay(3, ()) == 0.0


@pytest.mark.parametrize(
    ("attempt", "max_deliver", "expected"),
    [(1, 5, "nack"), (4, 5, "nack"), (5, 5, "term"), (6, 5, "term"), (1, 1, "term")],
)
def test_failure_outcome_retries_until_the_last_delivery(attempt, max_deliver, expected):
    assert failure_outcome(attempt, max_deliver) == expected


def test_group_by_stream_keeps_first_appearance_and_order_within_a_stream():
    a1 = make_event(StepStarted(step="x"), "run-a")
    b1 = make_event(StepStarted(step="y"), "gen-b")
    a2 = make_event(StepStarted(step="z"), "run-a")
    assert group_by_stream([a1, b1, a2]) == [("run-a", [a1, a2]), ("gen-b", [b1])]
    assert group_by_stream([]) == []


def test_describe_error_names_the_exception_type():
    assert describe_error(RuntimeError("boom")) == "RuntimeError: boom"
    assert describe_error(TimeoutError()) == "TimeoutError"


def test_subjects_for_uses_a_wildcard_kind_for_events_of_any_stream():
    assert subjects_for(["PipelineRequested", "StepFailed", "StepFailed"], "pilot") == [
        "pilot.run.pipeline_requested",
        "pilot.*.step_failed",
    ]
    with pytest.raises(UnknownEventType):
        subjects_for(["NoSuchEvent"], "pilot")


def test_publish_headers_carry_the_event_id_and_its_own_traceparent():
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = make_event(PipelineRequested(repo="/r"), "run-1", metadata={"traceparent": tp})
    assert publish_headers(event) == {"Nats-Msg-Id": str(event.event_id), "traceparent": tp}
    bare = make_event(PipelineRequested(repo="/r"), "run-1")
    assert publish_headers(bare) == {"Nats-Msg-Id": str(bare.event_id)}


def test_leader_lock_key_differs_by_schema_and_name():
    assert leader_lock_key("s", "relay") == leader_lock_key("s", "relay")
    assert len({leader_lock_key("s", "relay"), leader_lock_key("t", "relay"), leader_lock_key("s", "r2")}) == 3


def _spans(event):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared.messaging.consumer import handler_span

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with handler_span("analyzer", event, tracer_provider=provider):
        pass
    return exporter.get_finished_spans()


TRACE_ID, SPAN_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


def test_handler_span_continues_the_events_trace():
    event = make_event(PipelineRequested(repo="/r"), "run-1",
                       metadata={"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"})
    [span] = _spans(event)
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == SPAN_ID
    assert span.name == "analyzer handle PipelineRequested"


def test_replayed_event_links_to_its_old_trace_instead_of_parenting():
    event = make_event(PipelineRequested(repo="/r"), "run-1",
                       metadata={"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01", "replayed_from": "run-0"})
    [span] = _spans(event)
    assert span.parent is None
    assert format(span.context.trace_id, "032x") != TRACE_ID
    assert [format(link.context.trace_id, "032x") for link in span.links] == [TRACE_ID]


def test_a_handler_that_ends_its_own_bead_is_not_marked_completed_again():
    from shared.events import StepSkipped, StepStarted, make_event
    from shared.messaging.consumer import closes_step

    skipped = make_event(StepSkipped(step="docs", reason="not merged"), "run-1")
    assert closes_step([skipped], "docs")
    assert not closes_step([skipped], "merge")
    assert not closes_step([make_event(StepStarted(step="docs"), "run-1")], "docs")


def test_step_completed_lands_before_the_run_ends():
    from shared.events import DocsUpdated, PipelineCompleted, StepCompleted, make_event
    from shared.messaging.consumer import with_step_completed

    docs = make_event(DocsUpdated(files=["docs/graph.md"]), "run-1")
    end = make_event(PipelineCompleted(verdict="merged"), "run-1")
    done = make_event(StepCompleted(step="docs"), "run-1")
    assert [e.type for e in with_step_completed([docs, end], done)] == ["DocsUpdated", "StepCompleted",
                                                                         "PipelineCompleted"]
    assert [e.type for e in with_step_completed([docs], done)] == ["DocsUpdated", "StepCompleted"]
