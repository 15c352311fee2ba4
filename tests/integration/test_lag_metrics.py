"""Lag under failure, as an operator sees it: a real `repo-pilot relay` process exports the backlog
of a stalled relay and of a service with no running replica over OTLP, read back by a local
receiver decoding the real protobuf; `repo-pilot health` fails on the same stall."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from shared.app.runtime import service_routes
from shared.messaging.bus import ensure_stream
from shared.messaging.consumer import ServiceRuntime
from shared.messaging.relay import leader_lock_key
from tests.support.bus_harness import eventually, requested, running_relay
from tests.support.otlp import otlp_receiver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def exported(receiver, name: str, **labels) -> float | None:
    want = frozenset(labels.items())
    return next((v for attrs, v in receiver.latest(name).items() if attrs == want), None)


async def test_a_stalled_relay_and_a_dead_service_show_their_backlog(
        store, nats_client, bus_names, cli_env, database_url, db_schema):
    js = nats_client.jetstream()
    await ensure_stream(js, bus_names["stream_name"], bus_names["subject_prefix"])
    # The analyzer's durable, as its replica creates it on start; then the replica is gone
    # (killed): nothing consumes, the messages wait in JetStream.
    analyzer = ServiceRuntime("analyzer", service_routes("analyzer"), store, None, nats_url=cli_env["NATS_URL"],
                              **bus_names)
    assert await analyzer.ensure_consumer()
    pending = [await store.append(e.stream_id, [e]) for e in (requested(), requested(), requested())]
    async with running_relay(store, nats_client, bus_names) as relay:
        await eventually(lambda: _checkpoint_is(store, pending[-1][-1].global_position), what="relayed")
    assert relay.published == 3

    # The relay stalls: a leader that holds the lock and publishes nothing (a hung process).
    hung_leader = await asyncpg.connect(database_url, server_settings={"search_path": db_schema})
    await hung_leader.fetchval("SELECT pg_advisory_lock($1)", leader_lock_key(db_schema, "relay"))
    behind = [await store.append(e.stream_id, [e]) for e in (requested(), requested())]

    with otlp_receiver() as receiver:
        env = {**cli_env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
        proc = subprocess.Popen([sys.executable, "-m", "shared.app.cli", "relay"], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (exported(receiver, "consumer_lag", consumer="analyzer") == 3
                       and exported(receiver, "relay_lag") == 2):
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, (receiver.metric_names(),
                                                     receiver.latest("consumer_lag"), receiver.latest("relay_lag"))
                await asyncio.sleep(0.2)
            assert exported(receiver, "log_head") == behind[-1][-1].global_position
            assert exported(receiver, "consumer_acked", consumer="analyzer") == 0

            # Lag that grows while nothing moves is a failed health check, naming who is stuck.
            grow = asyncio.create_task(_append_slowly(store, 4))
            health = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "shared.app.cli", "health", "--json", "--window", "2"],
                env=cli_env, cwd=ROOT, capture_output=True, text=True, timeout=120)
            await grow
            report = json.loads(health.stdout)
            assert health.returncode == 1, health.stdout + health.stderr
            failed = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
            assert "relay lag" in failed and "checkpoint stuck" in failed["relay lag"], failed
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            await hung_leader.close()
    # Not a terminal: one JSON object per log line, naming the process's service.
    logs = [json.loads(line) for line in proc.stdout.read().splitlines() if line.startswith("{")]
    assert logs and {entry["service"] for entry in logs} == {"relay"}
    assert any(e["message"].startswith("running: relay=True") for e in logs), logs


async def _append_slowly(store, count: int) -> None:
    for event in [requested() for _ in range(count)]:
        await store.append(event.stream_id, [event])
        await asyncio.sleep(0.5)


async def _checkpoint_is(store, position: int) -> bool:
    return await store.get_checkpoint("relay") == position


async def test_a_merged_and_a_failed_run_are_counted_with_every_step_timed(store):
    """The projector counts what the log says ended, whichever service wrote it: the merged run's
    seven steps (merge and docs too), the failed run's failed step and the steps before it."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from shared.common.telemetry import Metrics
    from shared.events import (STEPS, MergeCompleted, PipelineCompleted, PipelineFailed, StepCompleted,
                               StepFailed, StepStarted, make_event)
    from shared.store.projections import Projector

    def step_events(stream, steps):
        return [e for step in steps for e in (make_event(StepStarted(step=step), stream, service="t"),
                                              make_event(StepCompleted(step=step), stream, service="t"))]

    merged, failed = requested(), requested()
    await store.append(merged.stream_id, [merged])
    await store.append(failed.stream_id, [failed])
    for step in STEPS:  # one batch per step, as the services write them
        await store.append(merged.stream_id, step_events(merged.stream_id, [step]))
        if step == "merge":
            await store.append(merged.stream_id, [make_event(MergeCompleted(
                pushed=True, branch="repo-pilot/x", merged=True), merged.stream_id, service="merger")])
    await store.append(merged.stream_id, [make_event(PipelineCompleted(verdict="merged"), merged.stream_id,
                                                     service="analyzer")])
    await store.append(failed.stream_id, step_events(failed.stream_id, ["analyze", "suggest"]))
    await store.append(failed.stream_id, [make_event(StepStarted(step="execute"), failed.stream_id, service="t")])
    await store.append(failed.stream_id, [
        make_event(StepFailed(step="execute", error="patch does not apply"), failed.stream_id, service="t"),
        make_event(PipelineFailed(step="execute", error="patch does not apply"), failed.stream_id, service="t")])

    reader = InMemoryMetricReader()
    projector = Projector(store, batch=3, metrics=Metrics(MeterProvider(metric_readers=[reader]).get_meter("t")))
    await projector.run_once()
    await projector.run_once()  # nothing new: nothing counted twice

    found = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found[metric.name] = {frozenset(p.attributes.items()): p for p in metric.data.data_points}
    runs = {attrs: p.value for attrs, p in found["runs_total"].items()}
    assert runs == {frozenset({("outcome", "completed"), ("verdict", "merged")}): 1,
                    frozenset({("outcome", "failed"), ("step", "execute")}): 1}
    timed = {(dict(a)["step"], dict(a)["status"]): p.count for a, p in found["step_duration_seconds"].items()}
    assert timed == {**{(s, "completed"): 1 for s in STEPS if s not in ("analyze", "suggest")},
                     ("analyze", "completed"): 2, ("suggest", "completed"): 2, ("execute", "failed"): 1}
    appended = {dict(a)["type"]: p.value for a, p in found["events_appended_total"].items()}
    assert appended["PipelineRequested"] == 2 and appended["StepFailed"] == 1
    assert sum(appended.values()) == await store.last_position()


async def test_the_stream_is_bounded_by_age_and_size(nats_client, bus_names):
    from shared.messaging.bus import STREAM_MAX_AGE_SECONDS, STREAM_MAX_BYTES

    info = await ensure_stream(nats_client.jetstream(), bus_names["stream_name"], bus_names["subject_prefix"])
    try:
        assert info.config.max_age == STREAM_MAX_AGE_SECONDS and info.config.max_bytes == STREAM_MAX_BYTES
    finally:
        await nats_client.jetstream().delete_stream(bus_names["stream_name"])
