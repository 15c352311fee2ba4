"""The Postgres event store (asyncpg).

Sequence-gap fix: appends are serialised by a transaction-scoped advisory lock
(`pg_advisory_xact_lock`, one key per schema), taken before the identity value is drawn and
held until commit. Global positions therefore become visible strictly in order, and a reader
that asks for `global_position > checkpoint` can never skip an event that commits late. This
is the pyeventsourcing / message-db choice; it trades some write concurrency for readers that
need no snapshot bookkeeping (`benchmarks/` shows the write throughput that remains).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg
from pydantic_core import from_json, to_json

from shared.events import Envelope
from shared.store.errors import AlreadyProcessed, ConcurrencyError, EventTooLarge, MigrationChanged
from shared.store.rows import ROW_COLUMNS, BadRow, decode_row

log = logging.getLogger("repo_pilot.store")

# Room for the envelope around `data` and `metadata` as the relay publishes it (ids, type, stream,
# positions, timestamps, correlation): generous, so the bound holds for what goes on the wire.
ENVELOPE_ALLOWANCE = 1024
DEFAULT_MAX_EVENT_BYTES = 900_000  # under NATS's default max_payload of 1 MiB
# Events this process committed, kept by position for its own tails (see `tail`): a relay in the
# same process publishes them without waiting for the NOTIFY round trip and a page read. Only
# while a tail runs here, only what some tail has not passed yet, and at most this many (events
# may be large: a tail that falls further behind reads the log as before).
HANDOFF_KEEP = 256


def check_event_size(stream_id: str, type_name: str, data_json: str, meta_json: str, limit: int) -> None:
    """Raise EventTooLarge, naming the payload's largest field, when an event would not fit."""
    rough = len(data_json) + len(meta_json) + ENVELOPE_ALLOWANCE  # characters: a lower bound on bytes
    if rough * 4 <= limit:
        return  # even all 4-byte characters would fit: skip encoding on the hot path
    size = len(data_json.encode()) + len(meta_json.encode()) + ENVELOPE_ALLOWANCE
    if size <= limit:
        return
    fields = {f"data.{k}": v for k, v in json.loads(data_json).items()}
    fields["metadata"] = json.loads(meta_json)
    sizes = {name: len(json.dumps(value, ensure_ascii=False).encode()) for name, value in fields.items()}
    largest = max(sizes, key=sizes.__getitem__)
    raise EventTooLarge(stream_id, type_name, size, limit, largest, sizes[largest])


def advisory_lock_key(schema: str, purpose: str) -> int:
    """The Postgres advisory lock key for `purpose` in `schema` (appends, migrations, a relay
    group): one 64-bit key per pair, the same in every process."""
    digest = hashlib.sha256(f"{schema}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def wait_for_any(events: Sequence[asyncio.Event], timeout: float) -> None:
    """Return when one of `events` is set or after `timeout` seconds, whichever comes first."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Text passes through as already-encoded JSON (payloads are encoded by pydantic-core).
    await conn.set_type_codec("jsonb", encoder=_encode_json, decoder=from_json, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state: LISTEN, session advisory locks and SET live on
    dedicated connections (relay leader, `tail`, `wait_for_log`). So asyncpg's default reset on
    release (`UNLISTEN *; RESET ALL; ...`, one more round trip per pooled call) is skipped;
    asyncpg still rolls back a transaction left open before this runs."""


def _encode_json(value: Any) -> str:
    # inf/nan (a payload may parse `1e400` as inf) become null: `Infinity` is not JSON to Postgres.
    return value if isinstance(value, str) else to_json(value, inf_nan_mode="null").decode()


def migrations() -> list[tuple[int, str, str]]:
    """The versioned SQL migrations shipped in `shared/store/migrations`, in order."""
    found = []
    for entry in resources.files("shared.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)


class PostgresEventStore:
    """Append-only event log with expected versions, tracking rows, checkpoints and NOTIFY."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, schema: str,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES):
        self.pool = pool
        self.max_event_bytes = max_event_bytes
        self.dsn = dsn
        self.schema = schema
        self.channel = f"{schema}_events"
        self._append_lock = advisory_lock_key(schema, "append")
        # Rows readers skipped because they do not decode, by position (see `decode_rows`).
        self.skipped: dict[int, BadRow] = {}
        self._committed: dict[int, Envelope] = {}  # this process's last commits, by position
        self._tails: dict[asyncio.Event, int] = {}  # each tail here: set on a commit -> its position

    @classmethod
    async def connect(
        cls, dsn: str, schema: str = "public", *, min_size: int = 1, max_size: int = 10,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> PostgresEventStore:
        """Connect, create the schema and run pending migrations (safe to race)."""
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, schema)
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_keep_session,
            server_settings={"search_path": schema},
        )
        return cls(pool, dsn, schema, max_event_bytes)

    async def close(self) -> None:
        await self.pool.close()

    # -- writing -----------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[Envelope],
        expected_version: int | None = None,
        *,
        tracking: tuple[str, uuid.UUID] | None = None,
    ) -> list[Envelope]:
        """Append events to one stream; returns them with version and global position.

        `expected_version` (0 = the stream must not exist) raises ConcurrencyError when another
        writer got there first; None appends at the end whatever the version. `tracking`
        (consumer, event id) is written in the same transaction and raises AlreadyProcessed if
        the row exists, rolling everything back. An event over `max_event_bytes` raises
        EventTooLarge before anything is written.
        """
        # One statement, so one implicit transaction and one round trip (migrations/0003, 0006).
        return self._hand_off(await self._append(self.pool, stream_id, list(events), expected_version, tracking))

    async def append_in(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        events: Sequence[Envelope],
        expected_version: int | None = None,
        *,
        tracking: tuple[str, uuid.UUID] | None = None,
    ) -> list[Envelope]:
        """`append` inside a transaction the caller owns (to add its own writes)."""
        return await self._append(conn, stream_id, events, expected_version, tracking)

    async def append_streams(
        self, groups: Sequence[tuple[str, Sequence[Envelope]]], *, tracking: tuple[str, uuid.UUID]
    ) -> list[Envelope]:
        """Append to several streams and write the tracking row in one transaction; raises
        AlreadyProcessed, appending nothing, when the row exists. With no groups, only the row."""
        stored: list[Envelope] = []
        async with self.pool.acquire() as conn, conn.transaction():
            for i, (stream_id, events) in enumerate(groups or [("", [])]):
                stored += await self._append(
                    conn, stream_id, list(events), None, tracking if i == 0 else None
                )
        return self._hand_off(stored)

    def _hand_off(self, committed: list[Envelope]) -> list[Envelope]:
        """Keep what this process just committed for its own tails and wake them (`tail`)."""
        if committed and self._tails:
            passed = min(self._tails.values())
            for event in committed:
                if event.global_position > passed:
                    self._committed[event.global_position] = event
            for position in [p for p in self._committed if p <= passed]:
                del self._committed[position]
            while len(self._committed) > HANDOFF_KEEP:
                del self._committed[next(iter(self._committed))]
            for woken in self._tails:
                woken.set()
        return committed

    def _handed_off(self, after_position: int, limit: int) -> list[Envelope]:
        """The events right after `after_position` that this process committed, while contiguous."""
        out = []
        while len(out) < limit and (event := self._committed.get(after_position + len(out) + 1)):
            out.append(event)
        return out

    async def _append(self, db, stream_id, events, expected_version, tracking) -> list[Envelope]:
        if not events and tracking is None:
            return []
        data = [e.data.model_dump_json() for e in events]
        meta = [to_json(e.metadata).decode() for e in events]
        for e, d, m in zip(events, data, meta, strict=True):
            check_event_size(stream_id, e.type, d, m, self.max_event_bytes)
        try:
            rows = await db.fetch(
                "SELECT out_position, out_version FROM append_events("
                "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                stream_id,
                expected_version,
                self._append_lock,
                self.channel,
                [e.event_id for e in events],
                [e.type for e in events],
                data,
                meta,
                [e.occurred_at for e in events],
                [e.causation_id for e in events],
                [e.correlation_id for e in events],
                tracking[0] if tracking else None,
                tracking[1] if tracking else None,
            )
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == "RP001":
                raise AlreadyProcessed(*tracking) from None
            if exc.sqlstate == "RP002":
                raise ConcurrencyError(stream_id, expected_version, int(exc.detail)) from None
            raise
        positions = sorted((r["out_version"], r["out_position"]) for r in rows)
        return [e.stored(v, p) for e, (v, p) in zip(events, positions, strict=True)]

    # -- reading -----------------------------------------------------------------------

    def decode_rows(self, rows: Sequence[asyncpg.Record], bad: list[BadRow] | None = None) -> list[Envelope]:
        """The rows that decode, as Envelopes (`rows.decode_row`, the one rule every reader uses);
        each one that does not is skipped, logged once, kept in `self.skipped` and added to `bad`
        (readers report it instead of crashing)."""
        out = []
        for row in rows:
            decoded = decode_row(row)
            if isinstance(decoded, Envelope):
                out.append(decoded)
                continue
            if bad is not None:
                bad.append(decoded)
            if decoded.global_position not in self.skipped:
                log.warning("skipping event at position %s (%s %s): %s", decoded.global_position,
                            decoded.type, decoded.stream_id, decoded.reason)
                self.skipped[decoded.global_position] = decoded
        return out

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[Envelope]:
        rows = await self.pool.fetch(
            f"SELECT {ROW_COLUMNS} FROM events WHERE stream_id = $1 AND version >= $2 ORDER BY version",
            stream_id,
            from_version,
        )
        return self.decode_rows(rows)

    async def get_event(self, event_id: uuid.UUID) -> Envelope | None:
        """The stored event with this id, or None when there is none or it does not decode
        (consumers check what the bus delivers against it)."""
        row = await self.pool.fetchrow(f"SELECT {ROW_COLUMNS} FROM events WHERE event_id = $1", event_id)
        found = self.decode_rows([row]) if row is not None else []
        return found[0] if found else None

    async def stream_version(self, stream_id: str) -> int:
        return await self.pool.fetchval(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream_id
        )

    async def read_page(
        self, after_position: int = 0, limit: int = 1000, bad: list[BadRow] | None = None,
        recorded: dict[int, datetime] | None = None,
    ) -> tuple[list[Envelope], int]:
        """Events after `after_position` (at most `limit` rows read) and the position of the last
        row read, which is past any undecodable rows skipped at the page's end. `recorded`, when
        given, gets each row's `recorded_at` by position: the store's clock, which rises with the
        position (migration 0006), unlike `occurred_at`, stamped by each writer's own clock."""
        columns = ROW_COLUMNS + (", recorded_at" if recorded is not None else "")
        rows = await self.pool.fetch(
            f"SELECT {columns} FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2",
            after_position,
            limit,
        )
        end = rows[-1]["global_position"] if rows else after_position
        events = self.decode_rows(rows, bad)
        if recorded is not None:  # the events' only: a reader pops each time as it uses the event
            times = {r["global_position"]: r["recorded_at"] for r in rows}
            recorded.update((e.global_position, times[e.global_position]) for e in events)
        return events, end

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Envelope]:
        """Events with global position > `after_position`, in order, at most `limit` (undecodable
        rows are skipped: see `decode_rows`)."""
        return (await self.read_page(after_position, limit))[0]

    async def read_correlated(self, correlation_id: str) -> list[Envelope]:
        rows = await self.pool.fetch(
            f"SELECT {ROW_COLUMNS} FROM events WHERE correlation_id = $1 OR stream_id = $1 "
            "ORDER BY global_position",
            correlation_id,
        )
        return self.decode_rows(rows)

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def last_position(self) -> int:
        return await self.pool.fetchval("SELECT coalesce(max(global_position), 0) FROM events")

    async def is_processed(self, consumer: str, event_id: uuid.UUID) -> bool:
        return bool(
            await self.pool.fetchval(
                "SELECT 1 FROM tracking WHERE consumer = $1 AND event_id = $2", consumer, event_id
            )
        )

    async def get_event_for(self, consumer: str, event_id: uuid.UUID) -> tuple[Envelope | None, bool]:
        """`get_event` and `is_processed` in one round trip (what a consumer asks of each delivery)."""
        row = await self.pool.fetchrow(
            f"SELECT {ROW_COLUMNS}, EXISTS (SELECT 1 FROM tracking WHERE consumer = $2 AND event_id = $1) "
            "AS processed FROM events WHERE event_id = $1", event_id, consumer)
        if row is None:
            return None, await self.is_processed(consumer, event_id)
        found = self.decode_rows([row])
        return (found[0] if found else None), row["processed"]

    async def get_checkpoint(self, name: str, conn: Any = None) -> int:
        db = conn or self.pool
        return await db.fetchval("SELECT position FROM checkpoints WHERE name = $1", name) or 0

    async def set_checkpoint(self, name: str, position: int, conn: Any = None) -> None:
        db = conn or self.pool
        await db.execute(
            "INSERT INTO checkpoints (name, position) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
            name,
            position,
        )

    @contextlib.asynccontextmanager
    async def appended(self) -> AsyncIterator[asyncio.Event]:
        """An event set by every append's NOTIFY, listened for on a dedicated connection (pooled
        connections hold no LISTEN) that is closed on leaving. Clear it before reading the log,
        so an append committed while reading is never missed."""
        woken = asyncio.Event()
        listener = await asyncpg.connect(self.dsn)
        try:
            await listener.add_listener(self.channel, lambda *_: woken.set())
            yield woken
        finally:
            # Bounded: a reader being stopped (relay shutdown, projector restart) must not wait on
            # a connection the server no longer answers.
            try:
                await listener.close(timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                listener.terminate()

    async def record_relay_fault(
        self, position: int, stream_id: str | None, type_name: str | None, kind: str, reason: str,
        relay: str, event_id: uuid.UUID | None = None,
    ) -> None:
        """Quarantine the event at `position` (once): the relay skips it and says why."""
        await self.pool.execute(
            "INSERT INTO relay_faults (global_position, event_id, stream_id, type, kind, reason, relay) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (global_position) DO NOTHING",
            position, event_id, stream_id, type_name, kind, reason, relay,
        )

    async def quarantine(self, rows: Sequence[BadRow], *, by: str, conn: Any = None) -> None:
        """Record rows readers step past in the quarantine (`relay_faults`, kind `undecodable`, or
        the row's own `kind`: the projector's `unprojectable`), once each whoever reads them first
        (`repo-pilot health` lists them)."""
        if rows:
            await (conn or self.pool).executemany(
                "INSERT INTO relay_faults (global_position, stream_id, type, kind, reason, relay) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (global_position) DO NOTHING",
                [(r.global_position, r.stream_id, r.type, getattr(r, "kind", "undecodable"), r.reason, by)
                 for r in rows])

    async def relay_faults(self, limit: int = 100) -> list[dict]:
        rows = await self.pool.fetch(
            "SELECT * FROM relay_faults ORDER BY global_position DESC LIMIT $1", limit)
        return [dict(r) for r in rows]

    async def tail(
        self, after_position: int = 0, *, batch: int = 500, poll_interval: float = 1.0, on_bad=None,
        recorded: dict[int, datetime] | None = None,
    ) -> AsyncIterator[Envelope]:
        """Yield every event after `after_position`, forever, woken by NOTIFY (polling as a fallback).

        Events this process committed itself are handed over at once (no NOTIFY round trip, no
        page read) while they follow on from where the tail is; the log is read again right after,
        so what other processes committed meanwhile follows in order. Undecodable rows are
        skipped, never retried forever; `on_bad(rows)` (async) hears of them before the page's
        events are yielded. `recorded`: as in `read_page` (those tails always read the log)."""
        local = asyncio.Event()
        async with self.appended() as woken:
            self._tails[local] = after_position
            try:
                position = after_position
                while True:
                    self._tails[local] = position
                    woken.clear()
                    local.clear()
                    if recorded is None and (handed := self._handed_off(position, batch)):
                        for event in handed:
                            yield event
                        position = handed[-1].global_position
                        continue  # then read the log: a NOTIFY cleared above may be for another process
                    bad: list[BadRow] = []
                    events, end = await self.read_page(position, batch, bad, recorded)
                    if bad and on_bad is not None:
                        await on_bad(bad)
                    for event in events:
                        yield event
                    full = end - position >= batch  # a full page: read on without waiting
                    position = end
                    if not full:
                        await wait_for_any([woken, local], poll_interval)
            finally:
                del self._tails[local]


def checksum(sql: str) -> str:
    """The sha256 of a migration's text, as recorded in `schema_migrations.checksum`."""
    return hashlib.sha256(sql.encode()).hexdigest()


async def _up_to_date(conn: asyncpg.Connection, schema: str, shipped: list[tuple[int, str, str]]) -> bool:
    """True when every shipped migration is recorded in `schema` with the checksum of its file
    (MigrationChanged when one differs); False when anything is missing, so `migrate` takes its lock."""
    try:
        rows = await conn.fetch(f'SELECT version, to_jsonb(m)->>\'checksum\' AS checksum FROM "{schema}".schema_migrations m')
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return False
    recorded = {r["version"]: r["checksum"] for r in rows}
    for version, name, sql in shipped:
        if recorded.get(version) and recorded[version] != checksum(sql):
            raise MigrationChanged(schema, name, recorded[version], checksum(sql))
    return all(recorded.get(version) for version, _, _ in shipped)


async def migrate(conn: asyncpg.Connection, schema: str) -> list[str]:
    """Apply pending migrations under a session advisory lock; returns the names applied.

    Raises MigrationChanged, before applying anything, when the file of an applied migration no
    longer has the checksum recorded when it was applied. Applied rows without a checksum (from
    before migration 0005) get the current file's recorded.

    A schema already up to date is confirmed with one query and no lock (every command and
    service opens the store: the full path was ~8 round trips each time)."""
    shipped = migrations()
    if await _up_to_date(conn, schema, shipped):
        return []
    applied: list[str] = []
    key = advisory_lock_key(schema, "migrate")
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        # to_jsonb(m): the checksum column does not exist until migration 0005 has run.
        rows = await conn.fetch(
            "SELECT version, to_jsonb(m)->>'checksum' AS checksum FROM schema_migrations m"
        )
        recorded = {r["version"]: r["checksum"] for r in rows}
        for version, name, sql in shipped:
            if recorded.get(version) and recorded[version] != checksum(sql):
                raise MigrationChanged(schema, name, recorded[version], checksum(sql))
        for version, name, sql in shipped:
            if version in recorded:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied.append(name)
        has_column = await conn.fetchval(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = $1 "
            "AND table_name = 'schema_migrations' AND column_name = 'checksum'", schema)
        if has_column:
            await conn.executemany(
                "UPDATE schema_migrations SET checksum = $2 WHERE version = $1 AND checksum IS NULL",
                [(version, checksum(sql)) for version, _, sql in shipped],
            )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)
    return applied
