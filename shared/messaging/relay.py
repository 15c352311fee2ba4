"""The outbox relay: publishes every stored event, in global order, to JetStream (DESIGN section 3).

Leadership: each relay keeps a dedicated asyncpg connection and asks for a session advisory lock
(`pg_try_advisory_lock`, one key per schema + relay name). Only the holder publishes; standbys
retry every `lock_retry` seconds and take over when the leader's connection dies (Postgres drops
the lock with the session). The checkpoint is written through that same lock connection, so a
relay that lost its lock can no longer move the checkpoint.

Publishing is pipelined: up to `window` events are in flight (sent, PubAck not yet back) at once.
Waiting for each PubAck before sending the next cost a round trip per event (0.17-0.35x raw
`publish_async` in benchmarks/relay_bench.py). Order on the stream still follows the log: one
connection carries the messages in the order they are sent, and the server stores them in the
order it reads them. PubAcks are taken in send order by one task, and `_acked` (what the
checkpoint may say) only ever moves to an event whose PubAck, and every earlier one, came back.
An event the bus refuses for good is quarantined when its turn comes, as before. A transient
error (timeout, no stream) ends the term with the checkpoint before the failed event; the ones
sent after it go out again next term and the stream drops those it already holds by
`Nats-Msg-Id`. The one case where the stream's order can differ from the log's: an event lost
while a later one in the same window was stored (the stream deleted and recreated mid-window);
consumers are idempotent and order-tolerant per run, and `repo-pilot relay --from-position`
rebuilds a stream in order.

Checkpoint cadence: the position of the last acknowledged event is written at most every
`checkpoint_interval` seconds (and on leaving). Writing it per event would double the round trips
per event; after a crash the few events published since the last write go out again and the
stream drops them by `Nats-Msg-Id` (2 minute window). Consumers are idempotent beyond that.

Nothing stalls the log: a row that does not decode (unknown type, malformed payload) and an event
the bus refuses for its size are quarantined in `relay_faults` with their position and reason
(`repo-pilot health` lists them, `repo_pilot_relay_faults_total` counts them) and publishing goes
on. Transient bus errors (NATS down, stream missing) end the leadership term and are retried.

Stream recovery: each time a relay takes the lead (after any publish or leadership error), it
compares the stream with the log: a stream that is empty or ends before the checkpoint (deleted
and recreated, or wiped) is republished from the last event it holds, not resumed at the
checkpoint.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from shared.common.tasks import cancel_until_done
from shared.common import telemetry
from shared.events import Envelope
from shared.messaging.bus import ensure_stream
from shared.store.postgres import advisory_lock_key

# JetStream's "message size exceeds maximum allowed" (a stream's max_msg_size).
_JS_MESSAGE_TOO_LARGE = 10054

log = logging.getLogger("repo_pilot.relay")


def leader_lock_key(schema: str, name: str) -> int:
    """The advisory lock key for one relay group (same schema and name = one leader)."""
    return advisory_lock_key(schema, f"relay:{name}")


def publish_headers(event: Envelope) -> dict[str, str]:
    """`Nats-Msg-Id` for dedupe and the traceparent stored with the event (not the relay's own)."""
    headers = {"Nats-Msg-Id": str(event.event_id)}
    if event.traceparent:
        headers["traceparent"] = event.traceparent
    return headers


def refusal_kind(exc: BaseException) -> str | None:
    """`too_large` when the bus refuses this one event for good (retrying cannot help), else None
    (a transient error: NATS down, no stream, a timeout)."""
    if isinstance(exc, nats.errors.MaxPayloadError):
        return "too_large"
    if isinstance(exc, nats.js.errors.APIError) and exc.err_code == _JS_MESSAGE_TOO_LARGE:
        return "too_large"
    return None


def resume_position(checkpoint: int, stream_messages: int, stream_last_position: int | None) -> int:
    """Where publishing resumes: the checkpoint, unless the stream lacks what it says was sent
    (empty, or its last event sits before the checkpoint), then right after what it holds."""
    if stream_messages == 0:
        return 0
    if stream_last_position is not None and stream_last_position < checkpoint:
        return stream_last_position
    return checkpoint


class LeadershipLost(Exception):
    """The lock connection died: another relay may lead now."""


class Relay:
    """One outbox relay; run several, exactly one publishes."""

    def __init__(
        self,
        store,
        nc: Client,
        *,
        stream_name: str = "PILOT",
        subject_prefix: str = "pilot",
        name: str = "relay",
        batch: int = 500,
        window: int = 1024,
        ack_timeout: float = 10.0,
        lock_retry: float = 0.5,
        checkpoint_interval: float = 0.2,
        poll_interval: float = 1.0,
        reset: bool = False,
    ):
        self.store = store
        self.nc = nc
        self.js = nc.jetstream()
        self.stream_name = stream_name
        self.subject_prefix = subject_prefix
        self.name = name
        self.batch = batch
        self.window = window  # events sent whose PubAck has not come back yet, at most
        self.ack_timeout = ack_timeout  # publish_async futures never time out on their own
        self.lock_retry = lock_retry
        self.checkpoint_interval = checkpoint_interval
        self.poll_interval = poll_interval
        self._reset = reset
        self._key = leader_lock_key(store.schema, name)
        self._lock_conn: asyncpg.Connection | None = None
        self._acked = 0
        self._saved = 0
        self.published = 0  # messages the stream accepted as new (not duplicates)
        self.quarantined = 0  # events recorded in relay_faults by this relay

    @property
    def is_leader(self) -> bool:
        return self._lock_conn is not None and not self._lock_conn.is_closed()

    @property
    def lock_backend_pid(self) -> int | None:
        """The Postgres backend holding the leader lock (for operators and failover tests)."""
        return self._lock_conn.get_server_pid() if self.is_leader else None

    async def republish_all(self, stop: asyncio.Event) -> None:
        """Run as `run`, but once leading publish again from position 0 (rebuilds a wiped stream)."""
        self._reset = True
        await self.run(stop)

    async def republish(self, from_position: int = 0, progress=None) -> tuple[int, int]:
        """Publish every event from position `from_position` up to the log's end now, once, without
        leadership or checkpoint (`repo-pilot relay --from-position N`, after a stream was wiped).

        The stream drops what it already holds by `Nats-Msg-Id` within its dedupe window, and the
        consumers skip what their tracking rows say they handled. Returns (sent, new on the stream);
        `progress(sent, new, position, end)` is called every `batch` events and at the end."""
        await ensure_stream(self.js, self.stream_name, self.subject_prefix)
        end = await self.store.last_position()
        counts = {"sent": 0, "new": 0, "position": max(from_position - 1, 0)}

        async def pages():
            position = counts["position"]
            while position < end:
                bad: list = []
                events, position = await self.store.read_page(position, min(self.batch, end - position), bad)
                await self._quarantine_rows(bad)
                for event in events:
                    yield event
                counts["position"] = position
                if progress is not None:
                    progress(counts["sent"], counts["new"], position, end)

        def acknowledged(event, ack) -> None:
            if ack is not None:
                counts["sent"] += 1
                counts["new"] += not ack.duplicate

        await self._pipeline(pages(), acknowledged)
        if progress is not None:
            progress(counts["sent"], counts["new"], counts["position"], end)
        return counts["sent"], counts["new"]

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by or lead until `stop` is set."""
        while not stop.is_set():
            conn = None
            try:
                conn = await asyncpg.connect(
                    self.store.dsn, server_settings={"search_path": self.store.schema}
                )
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key):
                    await self._lead(conn, stop)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, LeadershipLost) as exc:
                log.warning("%s: lost leadership or database connection: %s", self.name, exc)
            except Exception:
                # A bug or a bus failure (stream deleted, NATS down): say so and try again.
                log.exception("%s: publishing failed; retrying", self.name)
            finally:
                self._lock_conn = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.lock_retry)

    async def _lead(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        self._lock_conn = conn
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        if self._reset:
            await self.store.set_checkpoint(self.name, 0, conn=conn)
            self._reset = False
        checkpoint = await self.store.get_checkpoint(self.name, conn=conn)
        await ensure_stream(self.js, self.stream_name, self.subject_prefix)
        start = await self._recovery_start(checkpoint)
        self._acked = self._saved = start
        log.info("%s: leading; publishing after position %s to %s", self.name, start, self.stream_name)

        finished = asyncio.Event()
        publisher = asyncio.create_task(self._publish_after(start, conn))
        keeper = asyncio.create_task(self._keep_checkpoint(conn, finished))
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
        try:
            await asyncio.wait([publisher, keeper, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # The keeper is not cancelled (a query cut mid-flight leaves the connection busy): it
            # is told to finish and writes the last acknowledged position on its way out.
            finished.set()
            # on 3.11 a cancel landing as an inner wait_for completes is swallowed: cancel again
            await cancel_until_done(publisher, *waiters)
            await asyncio.gather(keeper, return_exceptions=True)
        if lost.is_set():
            raise LeadershipLost("lock connection closed")
        for task in (publisher, keeper):
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()

    async def _recovery_start(self, checkpoint: int) -> int:
        """The checkpoint, or earlier when the stream lacks events the checkpoint says it has."""
        if checkpoint == 0:
            return 0
        info = await self.js.stream_info(self.stream_name)
        last = None
        if info.state.messages:
            msg = await self.js.get_msg(self.stream_name, seq=info.state.last_seq)
            with contextlib.suppress(Exception):  # a foreign message: trust the checkpoint
                last = int(json.loads(msg.data)["global_position"])
        start = resume_position(checkpoint, info.state.messages, last)
        if start != checkpoint:
            log.warning("%s: stream %s holds %s messages (last position %s) but the checkpoint is %s: "
                        "republishing from position %s", self.name, self.stream_name,
                        info.state.messages, last, checkpoint, start)
        return start

    async def _publish_after(self, start: int, conn: asyncpg.Connection) -> None:
        async def events():
            async for event in self.store.tail(start, batch=self.batch, poll_interval=self.poll_interval,
                                               on_bad=self._quarantine_rows):
                if conn.is_closed():  # never publish once the lock may belong to someone else
                    raise LeadershipLost("lock connection closed")
                yield event

        def acknowledged(event, ack) -> None:
            if ack is not None and not ack.duplicate:
                self.published += 1
                telemetry.default_metrics().record_relay_published()

        await self._pipeline(events(), acknowledged)

    async def _pipeline(self, events, acknowledged) -> None:
        """Send each event of the async iterator `events` with at most `window` PubAcks outstanding;
        take the PubAcks in send order, calling `acknowledged(event, ack)` (ack None: quarantined)
        and moving `_acked` past it. Returns once a finite `events` is all acknowledged; raises the
        first transient failure (the events after it are then abandoned, not acknowledged).

        A full window refills only once half of it is acknowledged: refilling one event per PubAck
        makes nats-py write one message per socket send (a syscall each), which was most of the cost."""
        inflight: collections.deque = collections.deque()
        room, arrived, drained = asyncio.Event(), asyncio.Event(), asyncio.Event()
        traced = telemetry.tracing()  # once per term (a provider is installed at start), not per event

        async def send() -> None:
            async with contextlib.aclosing(events) as each:
                async for event in each:
                    if len(inflight) >= self.window:
                        room.clear()
                        await room.wait()
                    inflight.append((event, await self._send(event, traced)))
                    arrived.set()
            while inflight:
                drained.clear()
                await drained.wait()

        async def take() -> None:
            while True:
                if not inflight:
                    drained.set()
                    arrived.clear()
                    await arrived.wait()
                    continue
                event, future = inflight[0]
                try:
                    ack = future.result() if future.done() else await asyncio.wait_for(future, self.ack_timeout)
                except Exception as exc:
                    kind = refusal_kind(exc)
                    if kind is None:
                        raise
                    await self._quarantine(event.global_position, event.stream_id, event.type, kind,
                                           f"the bus refused it: {type(exc).__name__}: {exc}", event.event_id)
                    ack = None
                inflight.popleft()
                acknowledged(event, ack)
                self._acked = event.global_position
                if len(inflight) <= self.window // 2:
                    room.set()

        sender, taker = asyncio.create_task(send()), asyncio.create_task(take())
        try:
            done, _ = await asyncio.wait([sender, taker], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            await cancel_until_done(sender, taker)
            for _event, future in inflight:  # abandoned: frees their slots in nats-py's pending limit
                future.cancel()

    async def _send(self, event: Envelope, traced: bool) -> asyncio.Future:
        """Send one event without waiting for its PubAck. A refusal raised while sending (over the
        client's max_payload) comes back as a failed future, so it is handled in its turn. `traced`:
        a tracer provider is installed (`telemetry.tracing`)."""
        subject = event.subject(self.subject_prefix)
        # Without a tracer provider the span is a no-op that still costs ~15 % of the relay's time.
        span = (telemetry.publish_span(subject, str(event.event_id), event.traceparent,
                                       attributes={telemetry.STREAM_ID: event.stream_id,
                                                   telemetry.EVENT_TYPE: event.type})
                if traced else contextlib.nullcontext())
        try:
            with span:
                return await self.js.publish_async(subject, event.to_json().encode(), stream=self.stream_name,
                                                   headers=publish_headers(event))
        except Exception as exc:
            if refusal_kind(exc) is None:
                raise
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def _quarantine_rows(self, rows) -> None:
        for row in rows:
            await self._quarantine(row.global_position, row.stream_id, row.type, "undecodable", row.reason)

    async def _quarantine(self, position, stream_id, type_name, kind, reason, event_id=None) -> None:
        log.error("%s: quarantined event at position %s (%s %s): %s; publishing continues",
                  self.name, position, type_name, stream_id, reason)
        await self.store.record_relay_fault(position, stream_id, type_name, kind, reason, self.name, event_id)
        self.quarantined += 1
        telemetry.default_metrics().record_relay_fault(kind)

    async def _keep_checkpoint(self, conn: asyncpg.Connection, finished: asyncio.Event) -> None:
        """Write the acknowledged position now and then (and once more when `finished` is set).

        Doubles as the lock connection's liveness probe while nothing is published.
        """
        while not finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), self.checkpoint_interval)
            if self._acked != self._saved:
                await self._save(conn)
            elif not finished.is_set():
                await conn.fetchval("SELECT 1", timeout=5)

    async def _save(self, conn: asyncpg.Connection) -> None:
        acked = self._acked
        if acked != self._saved:
            started = time.monotonic()
            await self.store.set_checkpoint(self.name, acked, conn=conn)
            self._saved = acked
            log.debug("%s: checkpoint %s (%.1f ms)", self.name, acked, (time.monotonic() - started) * 1e3)
