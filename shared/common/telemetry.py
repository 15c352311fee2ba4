"""Traces and metrics (DESIGN section 6): one trace per run across every service.

The `traceparent` stored in an event's metadata is the thread that ties a run together: the relay
sends it as a header, and a consumer continues it with `handler_span`. Replayed events are the
exception (DESIGN section 8): their spans start a new trace that *links* to the original context,
so a replay does not hang new spans under a months-old trace.

Nothing here needs a collector. Until `setup_telemetry` is given an endpoint, the OpenTelemetry
API's no-op providers stay in place: spans cost next to nothing, nothing is exported, and a
traceparent received from upstream still propagates (the no-op tracer passes its parent along).

Every helper takes an optional `tracer_provider` / the `Metrics` class takes a meter, so tests can
use the SDK's in-memory exporter and reader without touching the process-wide providers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import contextvars

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.common.redaction import redact

log = logging.getLogger("repo_pilot.telemetry")

INSTRUMENTATION_NAME = "repo_pilot"
GEN_AI_SYSTEM = "openai"  # every engine speaks the OpenAI-compatible API (DESIGN section 4)
METRIC_EXPORT_INTERVAL_MS = 15_000  # dashboards refresh in seconds, not minutes (SDK default: 60 s)
# Steps run from a fraction of a second (a projection) to half an hour (a test suite on a big repo).
STEP_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

# W3C TraceContext, explicitly: events carry `traceparent`, whatever OTEL_PROPAGATORS says.
_propagator = TraceContextTextMapPropagator()
_setup_lock = threading.Lock()
_configured: tuple[str, str] | None = None  # (service name, endpoint) of the providers we installed

Attributes = Mapping[str, Any]

# Span attributes the dashboards search by (deploy/grafana/dashboards/repo-pilot.json links a run to
# its traces through STREAM_ID): pass them in `handler_span(..., attributes=...)`.
STREAM_ID = "pilot.stream_id"  # run-<uuid> / gen-<uuid>
EVENT_ID = "pilot.event_id"
EVENT_TYPE = "pilot.event_type"
SERVICE = "pilot.service"

# The run (stream id) whose event is being handled: logs carry it (see `LogContext`).
current_run: contextvars.ContextVar[str] = contextvars.ContextVar("repo_pilot_run", default="")


# -- setup -------------------------------------------------------------------------------------


def signal_url(endpoint: str, signal: str) -> str:
    """The OTLP/HTTP URL of one signal ("traces", "metrics") under a base endpoint.

    `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL (`http://otel-collector:4318`); the exporters want
    the full path when given an endpoint in code.
    """
    return f"{endpoint.rstrip('/')}/v1/{signal}"


def setup_telemetry(service_name: str, endpoint: str | None) -> None:
    """Export traces and metrics over OTLP/HTTP to `endpoint`; without one, change nothing.

    Installs a `TracerProvider` (BatchSpanProcessor) and a `MeterProvider`
    (PeriodicExportingMetricReader) as the process-wide providers, with `service.name` set.
    Idempotent: a second call in the same process does nothing (OpenTelemetry allows the global
    providers to be set only once); a call with a different service or endpoint is logged and
    ignored. Both providers flush at interpreter exit (see also `shutdown_telemetry`).
    """
    global _configured
    if not endpoint:
        return
    with _setup_lock:
        if _configured is not None:
            if _configured != (service_name, endpoint):
                log.warning("telemetry already exports as %s to %s; ignoring %s to %s",
                            *_configured, service_name, endpoint)
            return
        # Imported here: a process without an endpoint never loads the exporter stack.
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES, so operators can add their own.
        resource = Resource.create({SERVICE_NAME: service_name})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(signal_url(endpoint, "traces"))))
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(signal_url(endpoint, "metrics")),
            # The standard OTEL_METRIC_EXPORT_INTERVAL (ms) wins; ours is shorter than the SDK's.
            export_interval_millis=float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL") or METRIC_EXPORT_INTERVAL_MS),
        )
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
        _configured = (service_name, endpoint)
        log.info("telemetry: exporting traces and metrics of %s to %s", service_name, endpoint)


def shutdown_telemetry() -> None:
    """Flush and stop the exporting providers, if `setup_telemetry` installed them.

    The SDK also does this at interpreter exit; call it where a short command wants its last spans
    sent before it returns.
    """
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        shutdown = getattr(provider, "shutdown", None)
        if _configured is not None and shutdown is not None:
            shutdown()


# -- context propagation -----------------------------------------------------------------------


def tracer(tracer_provider: trace.TracerProvider | None = None) -> trace.Tracer:
    """Repo Pilot's tracer (from the global provider unless one is given)."""
    return trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=tracer_provider)


def tracing(tracer_provider: trace.TracerProvider | None = None) -> bool:
    """Whether spans are recorded: a provider was given, or one was installed process-wide
    (`setup_telemetry`, or a test's own). Without one every span is a no-op, so what would only
    have gone into a span need not be computed."""
    provider = tracer_provider or trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def context_from_traceparent(traceparent: str | None) -> otel_context.Context:
    """The context a W3C `traceparent` header describes; an empty context when absent or invalid."""
    if not traceparent:
        return otel_context.Context()
    return _propagator.extract({"traceparent": traceparent}, context=otel_context.Context())


def current_traceparent() -> str | None:
    """The `traceparent` header of the current span, to store in a new event's metadata.

    None when there is no valid current span (for example outside any span, telemetry off).
    """
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


# -- spans -------------------------------------------------------------------------------------


@contextmanager
def handler_span(
    name: str,
    traceparent: str | None,
    *,
    replayed: bool,
    attributes: Attributes | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Iterator[trace.Span]:
    """A CONSUMER span around one event's handler, made current for its duration.

    A live event's span is a child of the event's `traceparent`, so a run is one trace across
    services. A replayed event's span starts a new trace with a Link to that context instead.
    Without a traceparent the span is a new root. An exception leaving the block is recorded on the
    span (status ERROR) and re-raised.
    """
    origin = context_from_traceparent(traceparent)
    links: list[trace.Link] = []
    parent = origin
    if replayed:
        original = trace.get_current_span(origin).get_span_context()
        if original.is_valid:
            links.append(trace.Link(original, {"pilot.link": "replayed_from"}))
        parent = otel_context.Context()  # empty, not None: None would mean "the current span"
    with tracer(tracer_provider).start_as_current_span(
        name,
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        links=links,
        attributes={**(attributes or {}), "pilot.replayed": replayed},
    ) as span:
        token = current_run.set(str((attributes or {}).get(STREAM_ID, "")))
        try:
            yield span
        finally:
            current_run.reset(token)


MESSAGING_SYSTEM = "nats"
WAITED = "pilot.bus.waited_s"  # seconds from the event's append to its handler starting


def consumer_attributes(consumer: str, message_id: str, occurred_at: datetime) -> dict[str, Any]:
    """Messaging semconv attributes of a handler span, with the time the event waited on the bus
    (appended, relayed, queued for this durable): the part of a run no handler span shows."""
    waited = (datetime.now(UTC) - occurred_at).total_seconds()
    return {"messaging.system": MESSAGING_SYSTEM, "messaging.operation.type": "process",
            "messaging.consumer.group.name": consumer, "messaging.message.id": message_id,
            WAITED: max(waited, 0.0)}


@contextmanager
def publish_span(subject: str, message_id: str, traceparent: str | None, *,
                 attributes: Attributes | None = None,
                 tracer_provider: trace.TracerProvider | None = None) -> Iterator[trace.Span]:
    """A PRODUCER span for the relay's publish of one event, in the event's own trace (a child of
    its traceparent), so a trace shows when the event reached the bus."""
    with tracer(tracer_provider).start_as_current_span(
        f"send {subject}",
        context=context_from_traceparent(traceparent),
        kind=trace.SpanKind.PRODUCER,
        attributes={**(attributes or {}), "messaging.system": MESSAGING_SYSTEM,
                    "messaging.operation.type": "send", "messaging.destination.name": subject,
                    "messaging.message.id": message_id},
    ) as span:
        yield span


# -- logs --------------------------------------------------------------------------------------


class LogContext(logging.Filter):
    """Adds what joins a log line to its trace: `trace_id`, `span_id` (of the current span),
    `run_id` (the stream being handled) and `service`."""

    def __init__(self, service: str | None = None):
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else ""
        record.span_id = format(context.span_id, "016x") if context.is_valid else ""
        record.run_id = current_run.get()
        record.service = self.service or process_service
        return True


process_service = "repo-pilot"  # what this process runs, for logs (set by `name_process`)


def name_process(service: str) -> None:
    """Say which service this process runs (logs carry it, exporting or not)."""
    global process_service
    process_service = service


def json_log_handler(service: str | None = None, stream=None) -> logging.Handler:
    """A handler writing one JSON object per line (python-json-logger) with time, level, logger,
    message, trace and span ids, run id and service: what a log aggregator joins to traces."""
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s %(run_id)s %(service)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    ))
    handler.addFilter(LogContext(service))
    return handler


@dataclass
class LlmCall:
    """The span of one model call; `record_usage` fills in what is known only after it returns."""

    span: trace.Span
    model: str
    metrics: Metrics | None = None
    purpose: str = ""

    def record_usage(self, input_tokens: int, output_tokens: int, cost_usd: float = 0.0,
                     response_model: str | None = None) -> None:
        """Set the gen_ai usage attributes and count the tokens and cost by model."""
        self.span.set_attribute("gen_ai.usage.input_tokens", int(input_tokens))
        self.span.set_attribute("gen_ai.usage.output_tokens", int(output_tokens))
        self.span.set_attribute("pilot.llm.cost_usd", float(cost_usd))
        if response_model:
            self.span.set_attribute("gen_ai.response.model", response_model)
        (self.metrics or default_metrics()).record_llm(self.model, input_tokens, output_tokens, cost_usd,
                                                       step=self.purpose)


@contextmanager
def llm_span(model: str, purpose: str, *, tracer_provider: trace.TracerProvider | None = None,
             metrics: Metrics | None = None) -> Iterator[LlmCall]:
    """A CLIENT span for one chat completion, with OpenTelemetry gen_ai attributes.

    Yields an `LlmCall`; call `record_usage(...)` once the response is in (tokens and cost are
    known only then). Usage is also counted in `llm_tokens_total` and `llm_cost_usd_total`.
    """
    with tracer(tracer_provider).start_as_current_span(
        f"chat {model}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "gen_ai.system": GEN_AI_SYSTEM,
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "pilot.llm.purpose": purpose,
        },
    ) as span:
        yield LlmCall(span, model, metrics, purpose)


_GIT_OPTIONS_WITH_VALUE = {"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--exec-path"}


def git_subcommand(args: Sequence[str]) -> str:
    """The subcommand in git's argv (`["-C", "/r", "push", …]` -> "push"), skipping global options."""
    rest = iter(args)
    for arg in rest:
        if arg in _GIT_OPTIONS_WITH_VALUE:
            next(rest, None)
        elif not arg.startswith("-"):
            return arg
    return "git"


@contextmanager
def git_span(args: Sequence[str], *, tracer_provider: trace.TracerProvider | None = None) -> Iterator[trace.Span]:
    """Record one git command (`args` without the leading `git`) under the operation that ran it.

    Inside a span (a handler, a workspace operation) the command is an event on that span, with
    its arguments, duration and error: a step runs dozens of git commands, and a span each
    buried the trace (92 % of all spans). Outside any span it gets an INTERNAL span of its own.
    Secrets in the arguments are redacted before they become attributes; when nothing records
    spans (`tracing`) the arguments are not recorded, so they are not redacted either: the
    redactor loads detect-secrets (~0.3 s), which was most of a one-shot scan's first git command.
    """
    subcommand = git_subcommand(args)
    current = trace.get_current_span()
    if not current.is_recording():
        recorded = {"pilot.git.args": _redacted(args)} if tracing(tracer_provider) else None
        with tracer(tracer_provider).start_as_current_span(f"git {subcommand}", attributes=recorded) as span:
            yield span
        return
    began = time.monotonic()
    error = None
    try:
        yield current
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        attributes = {"pilot.git.args": _redacted(args), "pilot.git.duration_ms": round((time.monotonic() - began) * 1e3, 1)}
        if error:
            attributes["error.type"] = redact(error)[:200]
        current.add_event(f"git {subcommand}", attributes)


def _redacted(args: Sequence[str]) -> list[str]:
    return [redact(str(a)) for a in args]


@contextmanager
def sandbox_span(cmd: Sequence[str] | str, *, tracer_provider: trace.TracerProvider | None = None,
                 attributes: Attributes | None = None) -> Iterator[trace.Span]:
    """An INTERNAL span around one sandboxed command; set `process.exit.code` on it when known.
    The command is redacted only when spans are recorded (see `git_span`)."""
    argv = [cmd] if isinstance(cmd, str) else cmd
    recorded = {**(attributes or {}), "process.command_args": _redacted(argv)} if tracing(tracer_provider) else None
    with tracer(tracer_provider).start_as_current_span("sandbox run", attributes=recorded) as span:
        yield span


# -- metrics -----------------------------------------------------------------------------------


class Metrics:
    """Repo Pilot's instruments on one meter; each is created on first use.

    Names follow Prometheus habits so the collector's prometheus exporter keeps them as they are
    (with its `repo_pilot` namespace). Who records what, so each fact is counted once:

    - the projector (one per batch, live only): `runs_total{outcome,verdict|step}`,
      `step_duration_seconds{step,status}` (every step bead that ends, failed ones and merge too),
      `events_appended_total{type}`;
    - the lag poller, beside the relay (shared/messaging/lag.py): `consumer_lag{consumer}`,
      `consumer_acked{consumer}`, `relay_lag`, `log_head`;
    - the relay: `relay_published_total`, `relay_faults_total{kind}`;
    - whoever calls a model: `llm_tokens_total{model,step,type}`, `llm_cost_usd_total{model,step}`;
    - the runtime: `task_restarts_total{task}`.
    """

    def __init__(self, meter: metrics.Meter):
        self.meter = meter
        self._made: dict[str, Any] = {}

    @property
    def runs(self) -> metrics.Counter:
        return self._instrument("runs", lambda m: m.create_counter(
            "runs_total", unit="{run}", description="Runs ended, by outcome, verdict and failed step"))

    @property
    def step_duration(self) -> metrics.Histogram:
        return self._instrument("step_duration", lambda m: m.create_histogram(
            "step_duration_seconds", unit="s", description="Pipeline step duration by step and status",
            explicit_bucket_boundaries_advisory=STEP_DURATION_BUCKETS))

    @property
    def events_appended(self) -> metrics.Counter:
        return self._instrument("events_appended", lambda m: m.create_counter(
            "events_appended_total", unit="{event}", description="Events appended to the log, by type"))

    @property
    def llm_tokens(self) -> metrics.Counter:
        return self._instrument("llm_tokens", lambda m: m.create_counter(
            "llm_tokens_total", unit="{token}", description="Model tokens by model, step and type (input/output)"))

    @property
    def llm_cost(self) -> metrics.Counter:
        # "{USD}" is an annotation, which Prometheus naming drops: the name already says the unit.
        return self._instrument("llm_cost", lambda m: m.create_counter(
            "llm_cost_usd_total", unit="{USD}", description="Model cost in US dollars by model and step"))

    @property
    def consumer_lag(self) -> metrics.Gauge:
        return self._instrument("consumer_lag", lambda m: m.create_gauge(
            "consumer_lag", unit="{message}",
            description="Messages a durable consumer has not acknowledged (pending + in progress)"))

    @property
    def consumer_acked(self) -> metrics.Gauge:
        return self._instrument("consumer_acked", lambda m: m.create_gauge(
            "consumer_acked", unit="{message}",
            description="A durable consumer's ack floor (stream sequence): it moves when work is done"))

    @property
    def relay_lag(self) -> metrics.Gauge:
        return self._instrument("relay_lag", lambda m: m.create_gauge(
            "relay_lag", unit="{event}", description="Events in the log the relay has not published yet"))

    @property
    def log_head(self) -> metrics.Gauge:
        return self._instrument("log_head", lambda m: m.create_gauge(
            "log_head", unit="{event}", description="The log's last global position"))

    @property
    def relay_published(self) -> metrics.Counter:
        return self._instrument("relay_published", lambda m: m.create_counter(
            "relay_published_total", unit="{event}", description="Events the relay published to the bus"))

    @property
    def relay_faults(self) -> metrics.Counter:
        return self._instrument("relay_faults", lambda m: m.create_counter(
            "relay_faults_total", unit="{event}", description="Events the relay quarantined, by reason kind"))

    @property
    def task_restarts(self) -> metrics.Counter:
        return self._instrument("task_restarts", lambda m: m.create_counter(
            "task_restarts_total", unit="{restart}", description="Supervised tasks restarted after an error"))

    def record_relay_fault(self, kind: str) -> None:
        """Count one event quarantined by the relay (`undecodable`, `too_large`, …)."""
        self.relay_faults.add(1, {"kind": kind})

    def record_relay_published(self, count: int = 1) -> None:
        """Count events the stream accepted from the relay."""
        self.relay_published.add(count)

    def record_task_restart(self, task: str) -> None:
        """Count one restart of a supervised task (relay, projector, sweeper, a consumer)."""
        self.task_restarts.add(1, {"task": task})

    def record_run(self, outcome: str, *, verdict: str | None = None, step: str | None = None) -> None:
        """Count one ended run: `completed` (with its verdict) or `failed` (with the failed step)."""
        labels = {"outcome": outcome}
        if verdict:
            labels["verdict"] = verdict
        if step:
            labels["step"] = step
        self.runs.add(1, labels)

    def record_step(self, step: str, seconds: float, status: str = "completed") -> None:
        """Record how long one step took (`completed` or `failed`)."""
        self.step_duration.record(seconds, {"step": step, "status": status})

    def record_event(self, event_type: str) -> None:
        """Count one event appended to the log."""
        self.events_appended.add(1, {"type": event_type})

    def record_llm(self, model: str, input_tokens: int, output_tokens: int, cost_usd: float,
                   step: str = "") -> None:
        """Count one model call's tokens (by type) and cost, by model and the step that asked."""
        self.llm_tokens.add(int(input_tokens), {"model": model, "step": step, "type": "input"})
        self.llm_tokens.add(int(output_tokens), {"model": model, "step": step, "type": "output"})
        self.llm_cost.add(float(cost_usd), {"model": model, "step": step})

    def set_consumer_lag(self, consumer: str, lag: int, acked: int | None = None) -> None:
        """Report what waits for `consumer` (JetStream's `num_pending` + `num_ack_pending`) and,
        when known, its ack floor."""
        self.consumer_lag.set(int(lag), {"consumer": consumer})
        if acked is not None:
            self.consumer_acked.set(int(acked), {"consumer": consumer})

    def set_relay_lag(self, head: int, relay_at: int) -> None:
        """Report the log head and how far the relay's checkpoint is behind it."""
        self.log_head.set(int(head))
        self.relay_lag.set(max(int(head) - int(relay_at), 0))

    def _instrument(self, key: str, create):
        if key not in self._made:
            self._made[key] = create(self.meter)
        return self._made[key]


@cache
def default_metrics() -> Metrics:
    """The instruments on the global meter provider.

    Safe to call before `setup_telemetry`: the API's proxy meter forwards to the real provider once
    it is set, and records nothing until then.
    """
    return Metrics(metrics.get_meter(INSTRUMENTATION_NAME))
