"""The consumer runtime every service is built on (DESIGN sections 1, 3 and 8).

A service is a name and a list of routes (event type -> handler). The runtime keeps one durable
JetStream pull consumer per service (durable name = service name, shared by its replicas), and
for each delivered event:

- skips it (ack) when the tracking row (service, event id) exists: the event was handled before;
- appends `StepStarted` for the route's bead in its own transaction, so progress shows live,
  while the handler already runs with in-progress heartbeats (long steps outlive `ack_wait`);
- appends the handler's outputs + `StepCompleted` + the tracking row in ONE transaction, then acks;
- records a `StepError` (a failure the user caused) as `StepFailed` + `PipelineFailed` at once,
  after what it carries to record (`StepError.records`: the model calls that led to it);
- retries any other exception with backoff (`nack(delay)`) and, at the last delivery attempt,
  records the failure and terminates the message: never lost silently, never redelivered forever;
- holds a message while the store does not answer (a failure that cannot be recorded is never
  acked or terminated): in-progress heartbeats keep it, the store is probed with backoff, and the
  delivery is processed again once it answers, so an outage spends no delivery attempts;
- releases a delivery for redelivery (`nack`) when it fails while the runtime is stopping
  (Ctrl-C, SIGTERM): an interrupted step is not the user's error;
- recreates its durable consumer when it finds it gone (the stream was deleted).

`process` is the core and knows nothing about NATS; `start` wires it to FastStream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from faststream.exceptions import IncorrectState
from faststream.middlewares import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import DeliverPolicy

from shared.common import telemetry
from shared.common.redaction import redact
from shared.common.tasks import cancel_until_done, finish_within
from shared.events import STREAM_ENDS, Envelope, MalformedEvent, UnknownEventType, make_event
from shared.events.run import PipelineFailed, StepCompleted, StepFailed, StepStarted
from shared.messaging.bus import connect_nats, connection_callbacks, ensure_stream, subjects_for
from shared.ports.errors import StepError
from shared.store import AlreadyProcessed, EventTooLarge

log = logging.getLogger("repo_pilot.consumer")

# Seconds a running handler gets to finish once the runtime stops (SIGTERM, Ctrl-C, the end of
# `run`) before it is cancelled and its message released: well inside `docker stop`'s 10 s.
STOP_GRACE = 5.0

Handler = Callable[[Envelope, Any], Awaitable[list[Envelope]]]  # (event, deps) -> events to append
Outcome = Literal["ack", "nack", "term"]


@dataclass(frozen=True)
class Route:
    event_type: str  # e.g. "PipelineRequested"
    handler: Handler
    step: str | None = None  # bead name for StepStarted/StepCompleted/StepFailed, e.g. "analyze"


# -- pure decisions ----------------------------------------------------------------------------


def retry_delay(attempt: int, backoff: Sequence[float]) -> float:
    """Seconds to wait before delivery `attempt + 1`: backoff[attempt-1], the last one repeating."""
    if not backoff:
        return 0.0
    return float(backoff[min(max(attempt, 1), len(backoff)) - 1])


def failure_outcome(attempt: int, max_deliver: int) -> Outcome:
    """After an unexpected error: retry while deliveries remain, else terminate (and record it)."""
    return "nack" if attempt < max_deliver else "term"


def group_by_stream(events: Sequence[Envelope]) -> list[tuple[str, list[Envelope]]]:
    """Events grouped by stream, in the order streams first appear (each group keeps its order)."""
    groups: dict[str, list[Envelope]] = {}
    for event in events:
        groups.setdefault(event.stream_id, []).append(event)
    return list(groups.items())


def with_step_completed(outputs: list[Envelope], completed: Envelope) -> list[Envelope]:
    """`outputs` with the step's StepCompleted placed before the stream's end (PipelineCompleted /
    PipelineFailed, a generation job's FeatureValidated), so the log reads step done, then run done."""
    ends = [i for i, e in enumerate(outputs) if e.type in STREAM_ENDS]
    at = ends[0] if ends else len(outputs)
    return [*outputs[:at], completed, *outputs[at:]]


def closes_step(outputs: Sequence[Envelope], step: str) -> bool:
    """True when the handler already ended its own bead (e.g. `StepSkipped` with a reason)."""
    return any(e.type in ("StepCompleted", "StepSkipped", "StepFailed") and e.data.step == step for e in outputs)


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StoreUnavailable(Exception):
    """The store did not answer while a delivery was processed: hold the message, retry later."""


async def store_answers(store, timeout: float = 5.0) -> bool:
    """True when the store runs a trivial query within `timeout` seconds."""
    try:
        await asyncio.wait_for(store.ping(), timeout)
        return True
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


def _connection_of(broker: NatsBroker):
    """The broker's NATS client through its public `connection`, or None while it has none
    (before `start`, after `stop`): the callbacks then know a close was asked for."""
    try:
        return broker.connection
    except IncorrectState:
        return None


async def _settled(task: asyncio.Task | None) -> None:
    """Wait for a bookkeeping write; its failure (the database is down) propagates."""
    if task is not None:
        await task


# -- tracing -----------------------------------------------------------------------------------


def handler_span(service: str, event: Envelope, tracer_provider: Any = None):
    """A span around the handler that continues the event's trace (DESIGN section 6); a replayed
    event links to its original trace instead of parenting new spans under it."""
    return telemetry.handler_span(
        f"{service} handle {event.type}",
        event.traceparent,
        replayed=bool(event.metadata.get("replayed_from")),
        attributes={telemetry.STREAM_ID: event.stream_id, telemetry.EVENT_ID: str(event.event_id),
                    telemetry.EVENT_TYPE: event.type, telemetry.SERVICE: service,
                    **telemetry.consumer_attributes(service, str(event.event_id), event.occurred_at)},
        tracer_provider=tracer_provider,
    )


# -- the runtime -------------------------------------------------------------------------------


class ServiceRuntime:
    """Runs one service's routes against the store and its durable JetStream consumer."""

    def __init__(
        self,
        name: str,
        routes: list[Route],
        store,
        deps,
        *,
        nats_url: str,
        stream_name: str = "PILOT",
        subject_prefix: str = "pilot",
        max_deliver: int = 5,
        ack_wait: float = 60.0,
        heartbeat_interval: float | None = None,
        backoff: Sequence[float] = (1, 5, 15, 30),
        max_workers: int = 1,
    ):
        types = [r.event_type for r in routes]
        if len(set(types)) != len(types):
            raise ValueError(f"service {name}: more than one route for the same event type")
        self.name = name
        self.routes = {r.event_type: r for r in routes}
        self.store = store
        self.deps = deps
        self.nats_url = nats_url
        self.stream_name = stream_name
        self.subject_prefix = subject_prefix
        self.max_deliver = max_deliver
        self.ack_wait = ack_wait
        self.heartbeat_interval = heartbeat_interval or ack_wait / 3
        self.backoff = tuple(backoff)
        self.max_workers = max(1, max_workers)  # deliveries handled at once by this replica
        self.broker: NatsBroker | None = None
        self.stopping = False  # set first thing in `stop`: failures from then on are interruptions
        self.store_retry: Sequence[float] = (0.5, 1, 2, 5)
        self.watch_interval = 5.0
        self.watch_error: str = ""  # last reason the consumer watch failed ("" while healthy)
        self._watch: asyncio.Task | None = None
        self.stop_grace = STOP_GRACE

    # -- the core, independent of NATS --

    async def process(
        self, event: Envelope, attempt: int, heartbeat: Callable[[], Awaitable[None]], *, unhandled: bool = False
    ) -> Outcome:
        """Handle one delivery of `event`; returns what to tell the bus: "ack", "nack" or "term".
        `unhandled`: the caller has just read that no tracking row exists (`get_event_for`)."""
        route = self.routes.get(event.type)
        if route is None:
            return "ack"  # not ours (cannot happen with server-side filters, harmless if it does)
        if not unhandled and await self.store.is_processed(self.name, event.event_id):
            log.info("%s: %s %s already handled; skipping", self.name, event.type, event.event_id)
            return "ack"
        # StepStarted commits in its own transaction while the handler already runs: the bead shows
        # RUNNING live, the handler does not wait for a bookkeeping commit, and every later write
        # below waits for it, so in the log it still comes before the step's outcome.
        started = (
            asyncio.create_task(self.store.append(
                event.stream_id, [self._step_event(StepStarted(step=route.step, attempt=attempt), event)]
            ))
            if route.step else None
        )
        try:
            with handler_span(self.name, event):
                outputs = await self._with_heartbeats(route.handler(event, self.deps), heartbeat)
        except StepError as exc:
            await _settled(started)
            if self.stopping:
                return self._released(event, exc)
            log.warning("%s: %s failed (not retried): %s", self.name, event.type, exc.message)
            await self._record_failure(event, route, exc.message, exc.hint, attempt, retryable=False,
                                       records=exc.records)
            return "ack"
        except Exception as exc:
            await _settled(started)
            if self.stopping:
                return self._released(event, exc)
            if not await store_answers(self.store):
                raise StoreUnavailable(describe_error(exc)) from exc
            outcome = failure_outcome(attempt, self.max_deliver)
            if outcome == "nack":
                log.warning(
                    "%s: %s %s failed on attempt %s/%s, retrying in %ss: %s",
                    self.name, event.type, event.event_id, attempt, self.max_deliver,
                    retry_delay(attempt, self.backoff), describe_error(exc),
                )
                return "nack"
            log.error(
                "%s: %s %s failed on the last attempt (%s); recording the failure",
                self.name, event.type, event.event_id, attempt, exc_info=exc,
            )
            await self._record_failure(
                event, route, describe_error(exc),
                f"gave up after {attempt} attempts; see the {self.name} log", attempt, retryable=True,
            )
            return "term"
        await _settled(started)
        done = list(outputs or [])
        if route.step and not closes_step(done, route.step):
            done = with_step_completed(done, self._step_event(StepCompleted(step=route.step), event))
        try:
            await self._append_with_tracking(event, done)
        except AlreadyProcessed:
            log.info("%s: %s %s handled concurrently elsewhere; dropping this result",
                     self.name, event.type, event.event_id)
            return "ack"
        except EventTooLarge as exc:  # the same outputs would be refused again: not retried
            log.error("%s: %s %s: %s", self.name, event.type, event.event_id, exc)
            await self._record_failure(event, route, str(exc), "a step produced an event too large to "
                                       "store; see docs/reliability.md", attempt, retryable=False)
            return "ack"
        return "ack"  # step durations and run outcomes are counted by the projector, once

    def _released(self, event: Envelope, exc: BaseException) -> Outcome:
        log.info("%s: %s %s interrupted while stopping (%s); released for redelivery",
                 self.name, event.type, event.event_id, describe_error(exc))
        return "nack"

    def _step_event(self, payload, cause: Envelope) -> Envelope:
        return make_event(payload, cause.stream_id, cause=cause, service=self.name)

    async def _with_heartbeats(self, work: Awaitable[list[Envelope]], heartbeat) -> list[Envelope]:
        async def beat() -> None:
            while True:
                await asyncio.sleep(self.heartbeat_interval)
                try:
                    await heartbeat()
                except (NatsError, OSError) as exc:  # a lost heartbeat only risks a redelivery, which is safe
                    log.debug("%s: heartbeat failed: %s", self.name, exc)

        beater = asyncio.create_task(beat())
        try:
            return await work
        finally:
            beater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beater

    async def _append_with_tracking(self, cause: Envelope, events: list[Envelope]) -> None:
        """All events (any streams) and the tracking row in one transaction; raises AlreadyProcessed."""
        groups = group_by_stream(events) or [(cause.stream_id, [])]
        await self.store.append_streams(groups, tracking=(self.name, cause.event_id))

    async def _record_failure(
        self, event: Envelope, route: Route, error: str, hint: str, attempt: int, *, retryable: bool,
        records: Sequence[Any] = (),
    ) -> None:
        """StepFailed + PipelineFailed, after what the step asked to record with its failure (the
        model calls that led to it: StepError.records), all in the one tracking transaction."""
        step = route.step or self.name
        error, hint = redact(error), redact(hint)
        failed = [
            *(self._step_event(payload, event) for payload in records),
            self._step_event(StepFailed(step=step, error=error, attempt=attempt, retryable=retryable), event),
            self._step_event(PipelineFailed(step=step, error=error, hint=hint), event),
        ]
        with contextlib.suppress(AlreadyProcessed):
            await self._append_with_tracking(event, failed)

    # -- the NATS side --

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=self.name,
            durable_name=self.name,
            # Several filter subjects on one durable (nats-server >= 2.10); FastStream passes the
            # config through, so no catch-all subject filtered in code is needed.
            filter_subjects=subjects_for(list(self.routes), self.subject_prefix),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
        )

    async def start(self) -> None:
        """Connect, ensure the stream and the durable consumer (with this config), start consuming."""
        admin = await connect_nats(self.nats_url, f"{self.name}-admin")
        try:
            js = admin.jetstream()
            await ensure_stream(js, self.stream_name, self.subject_prefix)
            # An existing durable keeps its old config unless told otherwise: create-or-update.
            await js.add_consumer(self.stream_name, config=self.consumer_config())
        finally:
            await admin.close()

        broker = NatsBroker(
            self.nats_url,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            # Our logging config decides what shows; FastStream's own stdout logger would print
            # every task callback at INFO whatever the CLI asked for.
            logger=logging.getLogger(f"repo_pilot.faststream.{self.name}"),
            log_level=logging.DEBUG,
            graceful_timeout=self.stop_grace,  # how long `stop` lets a running handler finish
            **connection_callbacks(self.name, lambda: _connection_of(broker)),
        )
        subscriber = broker.subscriber(
            config=self.consumer_config(),
            durable=self.name,
            stream=JStream(self.stream_name, declare=False),
            pull_sub=PullSub(batch_size=1, timeout=1.0),  # one at a time: handlers may be long
            ack_policy=AckPolicy.MANUAL,  # we ack after the store commit, never FastStream
            # Several at once (the tester: one slow repository must not hold up the others'
            # test steps); FastStream fetches the next one only when a worker is free.
            **({"max_workers": self.max_workers} if self.max_workers > 1 else {}),
        )

        @subscriber
        async def on_message(msg: NatsMessage) -> None:
            await self._on_message(msg)

        await broker.start()
        self.broker = broker
        self._watch = asyncio.create_task(self._watch_consumer(), name=f"{self.name}-consumer-watch")
        log.info("%s: consuming %s from %s", self.name, sorted(self.routes), self.stream_name)

    async def stop(self) -> None:
        """Stop consuming, in bounded time: no new delivery is fetched, a handler still running
        gets `stop_grace` seconds to finish, then it is cancelled and its message released (nak)
        for redelivery."""
        self.stopping = True
        if self._watch is not None:
            await cancel_until_done(self._watch, give_up_after=self.stop_grace)
        if self.broker is not None:
            broker, self.broker = self.broker, None
            # FastStream waits `graceful_timeout` for running handlers, then cancels them; the
            # extra seconds bound the connection's close.
            with contextlib.suppress(Exception):
                await finish_within(broker.stop(), self.stop_grace + 5, f"{self.name}: stopping the broker")

    async def ensure_consumer(self) -> bool:
        """Create the stream and durable consumer if either is gone; True when it had to."""
        admin = await connect_nats(self.nats_url, f"{self.name}-admin")
        try:
            js = admin.jetstream()
            try:
                await js.consumer_info(self.stream_name, self.name)
                return False
            except NotFoundError:
                await ensure_stream(js, self.stream_name, self.subject_prefix)
                await js.add_consumer(self.stream_name, config=self.consumer_config())
                return True
        finally:
            await admin.close()

    async def _watch_consumer(self) -> None:
        """Recreate the durable consumer when it disappears (deleting a stream deletes them).

        Ends once the runtime is stopping, even when the cancel `stop` sends is swallowed (it
        often lands inside the NATS client's `close()`, which catches it)."""
        while not self.stopping:
            await asyncio.sleep(self.watch_interval)
            try:
                if await self.ensure_consumer():
                    log.warning("%s: durable consumer was gone (stream %s deleted?); recreated it",
                                self.name, self.stream_name)
                self.watch_error = ""
            except Exception as exc:  # NATS down: the client reconnects; say so and look again
                self.watch_error = describe_error(exc)
                log.warning("%s: cannot check the durable consumer: %s", self.name, self.watch_error)

    @property
    def healthy(self) -> str:
        """"" while consuming normally, else why not."""
        if self.broker is None:
            return "stopped"
        if self._watch is not None and self._watch.done():
            return "consumer watch ended"
        return self.watch_error

    async def _as_stored(self, event: Envelope, subject: str) -> tuple[Envelope | None, bool]:
        """The store's copy of a delivered event, or None (logged) when the store does not hold one
        with the same id, type, stream and causation: the store is the source of truth, the bus only
        carries, so a message published straight to NATS is never acted upon. Also whether this
        service handled it already (both in one round trip)."""
        stored, handled = await self.store.get_event_for(self.name, event.event_id)
        if stored is None or (stored.type, stored.stream_id, stored.causation_id) != (
                event.type, event.stream_id, event.causation_id):
            log.error("%s: refusing %s %s on %s: not in the event store as delivered (forged?)",
                      self.name, event.type, event.event_id, subject)
            return None, handled
        return stored, handled

    async def _on_message(self, msg: NatsMessage) -> None:
        raw = msg.raw_message
        try:
            event = Envelope.from_json(raw.data)
        except (MalformedEvent, UnknownEventType) as exc:
            log.error("%s: dropping invalid message on %s: %s", self.name, raw.subject, exc)
            await msg.reject()
            return
        attempt = raw.metadata.num_delivered or 1
        try:
            stored, handled = await self._as_stored(event, raw.subject)
        except Exception:  # the store is unreachable: not the message's fault, try again later
            log.exception("%s: could not check %s %s against the store", self.name, event.type, event.event_id)
            await msg.nack(delay=retry_delay(attempt, self.backoff))
            return
        if stored is None:
            await msg.reject()
            return
        event = stored
        try:
            outcome = await self._process_holding(msg, event, attempt, handled)
        except asyncio.CancelledError:
            # Stopped mid-step (past the grace): hand the message back now, not after `ack_wait`.
            log.info("%s: %s %s cancelled while stopping; released for redelivery",
                     self.name, event.type, event.event_id)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(msg.nack(), 2)
            raise
        if outcome == "ack":
            await msg.ack()
        elif outcome == "nack":
            await msg.nack(delay=retry_delay(attempt, self.backoff))
        else:
            await msg.reject()

    async def _process_holding(self, msg: NatsMessage, event: Envelope, attempt: int, handled: bool) -> Outcome:
        """`process`, again and again while the store does not answer (the message is kept with
        in-progress heartbeats meanwhile): a failure is recorded or the step done, never dropped.
        `handled`: what the store said of this delivery's tracking row just now."""
        waited = 0
        while True:
            try:
                # Handled: `process` reads the row again and acks. Not handled: the first pass trusts
                # the read just made; a pass after an outage reads it again.
                return await self.process(event, attempt, msg.in_progress, unhandled=not handled and not waited)
            except Exception as exc:
                if self.stopping:
                    return "nack"
                if await store_answers(self.store):
                    # Not an outage: a bookkeeping bug. Retry like a handler failure would.
                    log.exception("%s: could not process %s %s (attempt %s)", self.name, event.type,
                                  event.event_id, attempt)
                    return "nack" if attempt < self.max_deliver else "term"
                delay = retry_delay(waited + 1, self.store_retry)
                waited += 1
                if waited == 1 or waited % 20 == 0:
                    log.warning("%s: the store does not answer (%s); holding %s %s and retrying",
                                self.name, describe_error(exc), event.type, event.event_id)
                with contextlib.suppress(NatsError, OSError):
                    await msg.in_progress()
                await asyncio.sleep(min(delay, self.heartbeat_interval))
