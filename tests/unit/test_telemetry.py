"""Telemetry helpers against the real OpenTelemetry SDK (in-memory exporter and reader).

Each test builds its own providers and passes them in, so the process-wide providers stay as they
are and tests can run in any order or in parallel.
"""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared.common import telemetry
from shared.common.telemetry import (
    Metrics,
    context_from_traceparent,
    current_traceparent,
    git_span,
    handler_span,
    llm_span,
    redact,
    sandbox_span,
    setup_telemetry,
    signal_url,
)

pytestmark = pytest.mark.unit

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def meter():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield Metrics(provider.get_meter("test")), reader
    provider.shutdown()


def points(reader, name):
    """{frozen attributes: data point} of metric `name` from one collection."""
    found = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[frozenset(point.attributes.items())] = point
    return found


# -- propagation -------------------------------------------------------------------------------


def test_a_traceparent_becomes_a_remote_parent_context():
    span_context = trace.get_current_span(context_from_traceparent(TRACEPARENT)).get_span_context()
    assert span_context.is_valid and span_context.is_remote
    assert format(span_context.trace_id, "032x") == TRACE_ID
    assert format(span_context.span_id, "016x") == SPAN_ID


@pytest.mark.parametrize("header", [None, "", "not-a-traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"])
def test_a_missing_or_invalid_traceparent_gives_no_parent(header):
    assert not trace.get_current_span(context_from_traceparent(header)).get_span_context().is_valid


def test_no_current_span_means_no_traceparent():
    assert current_traceparent() is None


# -- handler spans -----------------------------------------------------------------------------


def test_a_handler_span_continues_the_events_trace(spans):
    provider, exporter = spans
    with handler_span("analyzer handle PipelineRequested", TRACEPARENT, replayed=False,
                      attributes={"pilot.stream_id": "run-1"}, tracer_provider=provider) as span:
        inner = current_traceparent()
    (finished,) = exporter.get_finished_spans()
    assert format(finished.context.trace_id, "032x") == TRACE_ID
    assert format(finished.parent.span_id, "016x") == SPAN_ID and finished.parent.is_remote
    assert finished.kind is SpanKind.CONSUMER
    assert finished.links == ()
    assert finished.attributes["pilot.stream_id"] == "run-1"
    assert finished.attributes["pilot.replayed"] is False
    # What the handler stores in its new events names the handler span, in the same trace.
    assert inner == f"00-{TRACE_ID}-{format(span.get_span_context().span_id, '016x')}-01"


def test_a_replayed_handler_span_starts_a_new_trace_linked_to_the_original(spans):
    provider, exporter = spans
    with handler_span("analyzer handle PipelineRequested", TRACEPARENT, replayed=True,
                      attributes={}, tracer_provider=provider):
        pass
    (finished,) = exporter.get_finished_spans()
    assert format(finished.context.trace_id, "032x") != TRACE_ID
    assert finished.parent is None
    (link,) = finished.links
    assert format(link.context.trace_id, "032x") == TRACE_ID
    assert format(link.context.span_id, "016x") == SPAN_ID
    assert finished.attributes["pilot.replayed"] is True


def test_a_replayed_span_is_a_root_even_inside_another_span(spans):
    provider, exporter = spans
    with (
        telemetry.tracer(provider).start_as_current_span("outer"),
        handler_span("h", TRACEPARENT, replayed=True, tracer_provider=provider),
    ):
        pass
    handler = next(s for s in exporter.get_finished_spans() if s.name == "h")
    assert handler.parent is None


def test_without_a_traceparent_a_handler_span_is_a_new_root(spans):
    provider, exporter = spans
    with handler_span("h", None, replayed=False, tracer_provider=provider):
        pass
    (finished,) = exporter.get_finished_spans()
    assert finished.parent is None and finished.links == ()


def test_a_failing_handler_is_recorded_on_its_span_and_still_raises(spans):
    provider, exporter = spans
    with (
        pytest.raises(RuntimeError, match="boom"),
        handler_span("h", TRACEPARENT, replayed=False, tracer_provider=provider),
    ):
        raise RuntimeError("boom")
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert [e.name for e in finished.events] == ["exception"]


def test_with_the_no_op_provider_the_traceparent_still_flows_through_a_handler():
    # Telemetry off: a handler's new events must still carry the run's trace id.
    with handler_span("h", TRACEPARENT, replayed=False, tracer_provider=trace.NoOpTracerProvider()):
        assert current_traceparent() == TRACEPARENT


# -- model, git and sandbox spans --------------------------------------------------------------


def test_an_llm_span_carries_gen_ai_attributes_and_counts_usage(spans, meter):
    provider, exporter = spans
    instruments, reader = meter
    with llm_span("gpt-4.1", "suggest", tracer_provider=provider, metrics=instruments) as call:
        call.record_usage(input_tokens=1200, output_tokens=300, cost_usd=0.0048)
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "chat gpt-4.1" and finished.kind is SpanKind.CLIENT
    assert finished.attributes["gen_ai.system"] == "openai"
    assert finished.attributes["gen_ai.request.model"] == "gpt-4.1"
    assert finished.attributes["gen_ai.usage.input_tokens"] == 1200
    assert finished.attributes["gen_ai.usage.output_tokens"] == 300
    assert finished.attributes["pilot.llm.purpose"] == "suggest"
    tokens = points(reader, "llm_tokens_total")
    assert tokens[frozenset({("model", "gpt-4.1"), ("step", "suggest"), ("type", "input")})].value == 1200
    assert tokens[frozenset({("model", "gpt-4.1"), ("step", "suggest"), ("type", "output")})].value == 300
    (cost,) = points(reader, "llm_cost_usd_total").values()
    assert cost.value == pytest.approx(0.0048)


def test_an_llm_span_is_a_child_of_the_handler_span(spans, meter):
    provider, exporter = spans
    with (
        handler_span("h", TRACEPARENT, replayed=False, tracer_provider=provider),
        llm_span("m", "review", tracer_provider=provider, metrics=meter[0]),
    ):
        pass
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    assert by_name["chat m"].parent.span_id == by_name["h"].context.span_id


def test_git_spans_name_the_subcommand_and_hide_credentials(spans):
    provider, exporter = spans
    with git_span(["-C", "/r", "push", "https://x-access-token:ghp_secret@github.com/o/r.git", "main"],
                  tracer_provider=provider):
        pass
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "git push"
    assert "ghp_secret" not in " ".join(finished.attributes["pilot.git.args"])
    assert "https://***@github.com/o/r.git" in finished.attributes["pilot.git.args"]


def test_git_commands_inside_an_operation_are_events_of_its_span(spans):
    provider, exporter = spans
    with handler_span("executor handle ImprovementsSuggested", TRACEPARENT, replayed=False,
                      tracer_provider=provider):
        with git_span(["worktree", "add", "/w"], tracer_provider=provider):
            pass
        with pytest.raises(RuntimeError), git_span(["-C", "/w", "apply", "p.patch"], tracer_provider=provider):
            raise RuntimeError("patch does not apply")
    (handler,) = exporter.get_finished_spans()  # one span, not three
    assert [e.name for e in handler.events] == ["git worktree", "git apply"]
    assert list(handler.events[0].attributes["pilot.git.args"]) == ["worktree", "add", "/w"]
    assert handler.events[0].attributes["pilot.git.duration_ms"] >= 0
    assert "patch does not apply" in handler.events[1].attributes["error.type"]


def test_a_sandbox_span_records_the_command_and_what_the_caller_adds(spans):
    provider, exporter = spans
    with sandbox_span(["python", "-m", "pytest", "-q"], tracer_provider=provider) as span:
        span.set_attribute("process.exit.code", 1)
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "sandbox run"
    assert list(finished.attributes["process.command_args"]) == ["python", "-m", "pytest", "-q"]
    assert finished.attributes["process.exit.code"] == 1


@pytest.mark.parametrize(("arg", "expected"), [
    ("https://user:pw@host/x.git", "https://***@host/x.git"),
    ("ssh://git@host/x.git", "ssh://***@host/x.git"),
    ("https://host/x.git", "https://host/x.git"),
    ("--depth=1", "--depth=1"),
])
def test_redact(arg, expected):
    assert redact(arg) == expected


# -- metrics -----------------------------------------------------------------------------------


def test_runs_steps_and_lag_are_recorded_by_their_labels(meter):
    instruments, reader = meter
    instruments.record_run("completed", verdict="merged")
    instruments.record_run("completed", verdict="merged")
    instruments.record_run("failed", step="test")
    instruments.record_step("analyze", 2.0)
    instruments.record_step("analyze", 40.0)
    instruments.record_step("test", 3.0, status="failed")
    instruments.set_consumer_lag("tester", 7, acked=10)
    instruments.set_consumer_lag("tester", 3, acked=14)
    instruments.set_relay_lag(120, 100)

    runs = points(reader, "runs_total")
    assert runs[frozenset({("outcome", "completed"), ("verdict", "merged")})].value == 2
    assert runs[frozenset({("outcome", "failed"), ("step", "test")})].value == 1
    steps = points(reader, "step_duration_seconds")
    analyze = steps[frozenset({("step", "analyze"), ("status", "completed")})]
    assert analyze.count == 2 and analyze.sum == 42.0
    assert tuple(analyze.explicit_bounds) == telemetry.STEP_DURATION_BUCKETS  # seconds, not ms defaults
    assert steps[frozenset({("step", "test"), ("status", "failed")})].sum == 3.0
    (lag,) = points(reader, "consumer_lag").values()
    assert lag.value == 3 and dict(lag.attributes) == {"consumer": "tester"}
    assert next(iter(points(reader, "consumer_acked").values())).value == 14
    assert next(iter(points(reader, "relay_lag").values())).value == 20
    assert next(iter(points(reader, "log_head").values())).value == 120


def test_model_usage_is_counted_by_model_and_the_step_that_asked(spans, meter):
    provider, _ = spans
    instruments, reader = meter
    with llm_span("gpt-x", "review", tracer_provider=provider, metrics=instruments) as call:
        call.record_usage(100, 20, 0.5)
    tokens = points(reader, "llm_tokens_total")
    assert tokens[frozenset({("model", "gpt-x"), ("step", "review"), ("type", "input")})].value == 100
    cost = points(reader, "llm_cost_usd_total")
    assert cost[frozenset({("model", "gpt-x"), ("step", "review")})].value == 0.5


def test_instruments_are_created_once_and_only_when_used(meter):
    instruments, reader = meter
    assert points(reader, "runs_total") == {}
    assert instruments.runs is instruments.runs


def test_a_publish_span_continues_the_events_trace_with_messaging_attributes(spans):
    provider, exporter = spans
    with telemetry.publish_span("pilot.run.repo_analyzed", "e-1", TRACEPARENT, tracer_provider=provider):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.kind == SpanKind.PRODUCER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == SPAN_ID
    assert span.attributes["messaging.system"] == "nats"
    assert span.attributes["messaging.destination.name"] == "pilot.run.repo_analyzed"
    assert span.attributes["messaging.message.id"] == "e-1"


def test_a_consumer_span_says_how_long_the_event_waited_on_the_bus():
    from datetime import UTC, datetime, timedelta

    appended = datetime.now(UTC) - timedelta(seconds=30)
    attrs = telemetry.consumer_attributes("tester", "e-1", appended)
    assert attrs["messaging.consumer.group.name"] == "tester"
    assert 30 <= attrs[telemetry.WAITED] < 3600


# -- what the projector counts and what health calls a stall ------------------------------------


def test_a_batch_counts_each_run_and_step_it_ended_once():
    from datetime import UTC, datetime, timedelta

    from shared.events import PipelineFailed, PipelineRequested, StepFailed, StepStarted, make_event
    from shared.store.fold import ended, fold_all, run_labels, run_outcome, statuses

    t0 = datetime.now(UTC)
    events = [make_event(PipelineRequested(repo="/r", categories=["security"]), "run-1", service="t"),
              make_event(StepStarted(step="analyze"), "run-1", service="t"),
              make_event(StepFailed(step="analyze", error="boom"), "run-1", service="t"),
              make_event(PipelineFailed(step="analyze", error="boom"), "run-1", service="t")]
    events = [e.model_copy(update={"global_position": i, "occurred_at": t0 + timedelta(seconds=i)})
              for i, e in enumerate(events, 1)]
    runs, beads = {}, {}
    fold_all(runs, beads, events[:2])
    before = statuses(runs, beads)
    fold_all(runs, beads, events[2:])
    done = ended(before, runs, beads)
    (run,) = [d["run"] for d in done if "run" in d]
    assert run_outcome(run) == "failed" and run_labels(run) == {"step": "analyze"}
    assert [(d["step"], d["status"], d["seconds"]) for d in done if "step" in d] == [("analyze", "FAILED", 1.0)]
    assert ended(statuses(runs, beads), runs, beads) == []  # nothing ends twice


def test_lag_is_a_stall_only_when_nothing_moves():
    from shared.messaging.lag import ConsumerLag, LagSample, stalled

    before = LagSample(head=10, relay_at=8, consumers={"tester": ConsumerLag(2, 1, 5), "reviewer": ConsumerLag(4, 0, 5)})
    grew_stuck = LagSample(head=14, relay_at=8, consumers={"tester": ConsumerLag(4, 1, 5), "reviewer": ConsumerLag(6, 0, 9)})
    assert set(stalled(before, grew_stuck)) == {"relay", "tester"}  # reviewer acked: working it off
    steady = LagSample(head=10, relay_at=10, consumers=before.consumers)
    assert stalled(steady, steady) == {}  # a step holding its messages for a while is no stall
    assert set(stalled(before, before)) == {"relay"}  # a relay behind that does not move is
    moving = LagSample(head=14, relay_at=12, consumers=before.consumers)
    assert stalled(before, moving) == {}


# -- setup -------------------------------------------------------------------------------------


def test_without_an_endpoint_setup_installs_nothing():
    before = trace.get_tracer_provider(), telemetry.metrics.get_meter_provider()
    setup_telemetry("analyzer", None)
    setup_telemetry("analyzer", "")
    assert (trace.get_tracer_provider(), telemetry.metrics.get_meter_provider()) == before
    assert telemetry._configured is None


def test_signal_urls_sit_under_the_base_endpoint():
    assert signal_url("http://otel-collector:4318", "traces") == "http://otel-collector:4318/v1/traces"
    assert signal_url("http://otel-collector:4318/", "metrics") == "http://otel-collector:4318/v1/metrics"


# -- logs --------------------------------------------------------------------------------------


def test_json_logs_carry_the_trace_span_run_and_service(spans):
    import io
    import json
    import logging

    provider, _ = spans
    out = io.StringIO()
    logger = logging.getLogger("repo_pilot.test_json_logs")
    logger.addHandler(telemetry.json_log_handler("tester", out))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    with handler_span("tester handle ChangesCommitted", TRACEPARENT, replayed=False,
                      attributes={telemetry.STREAM_ID: "run-42"}, tracer_provider=provider) as span:
        logger.info("testing %s, a line longer than eighty columns so a terminal renderer would wrap it "
                    "somewhere", "the branch")
        span_id = format(span.get_span_context().span_id, "016x")
    logger.warning("outside")
    inside, outside = [json.loads(line) for line in out.getvalue().splitlines()]
    assert inside["message"].startswith("testing the branch, a line longer") and inside["level"] == "INFO"
    assert (inside["trace_id"], inside["span_id"], inside["run_id"], inside["service"]) == (
        TRACE_ID, span_id, "run-42", "tester")
    assert outside["run_id"] == "" and outside["trace_id"] == "" and outside["logger"] == "repo_pilot.test_json_logs"
