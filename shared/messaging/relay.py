"""The outbox relay: publishes every stored event, in global order, to JetStream (DESIGN section 3).

Leadership: each relay keeps a dedicated asyncpg connection and asks for a session advisory lock
(`pg_try_advisory_lock`, one key per schema + relay name). Only the holder publishes; standbys
retry every `lock_retry` seconds and take over when the leader's connection dies (Postgres drops
the lock with the session). The checkpoint is written through that same lock connection, so a
relay that lost its lock can no longer move the checkpoint.

Checkpoint cadence: each event is published and its PubAck awaited before the next (global order
on the stream), and the position of the last acknowledged event is written at most every
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
        position, sent, new = max(from_position - 1, 0), 0, 0
        while position < end:
            bad: list = []
            events, position = await self.store.read_page(position, min(self.batch, end - position), bad)
            await self._quarantine_rows(bad)
            for event in events:
                try:
                    ack = await self.js.publish(event.subject(self.subject_prefix), event.to_json().encode(),
                                                stream=self.stream_name, headers=publish_headers(event))
                except Exception as exc:
                    if refusal_kind(exc) is None:
                        raise
                    await self._quarantine(event.global_position, event.stream_id, event.type, refusal_kind(exc),
                                           f"the bus refused it: {type(exc).__name__}: {exc}", event.event_id)
                    continue
                sent += 1
                new += not ack.duplicate
            if progress is not None:
                progress(sent, new, position, end)
        return sent, new

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
        async for event in self.store.tail(start, batch=self.batch, poll_interval=self.poll_interval,
                                           on_bad=self._quarantine_rows):
            if conn.is_closed():  # never publish once the lock may belong to someone else
                raise LeadershipLost("lock connection closed")
            subject = event.subject(self.subject_prefix)
            try:
                with telemetry.publish_span(subject, str(event.event_id), event.traceparent,
                                            attributes={telemetry.STREAM_ID: event.stream_id,
                                                        telemetry.EVENT_TYPE: event.type}):
                    ack = await self.js.publish(subject, event.to_json().encode(), stream=self.stream_name,
                                                headers=publish_headers(event))
            except Exception as exc:
                kind = refusal_kind(exc)
                if kind is None:
                    raise
                await self._quarantine(event.global_position, event.stream_id, event.type, kind,
                                       f"the bus refused it: {type(exc).__name__}: {exc}", event.event_id)
            else:
                if not ack.duplicate:
                    self.published += 1
                    telemetry.default_metrics().record_relay_published()
            self._acked = event.global_position

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
