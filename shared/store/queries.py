"""Questions the app and the sweeper ask of the log and the read models, in SQL.

The one home of two rules that used to be written twice: what a *stalled run* is
(`stalled_runs`, asked by the sweeper that ends them and by `repo-pilot health` that reports
them) and how a request takes its *target* (`target_transaction`, used by every face that
starts a run: CLI, gateway, replay). Also the read models with filters and pages (`find_runs`,
`find_beads`) and what `events import` asks of the log (`stored_positions`, `track`).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events import RUN_ENDS, STREAM_ENDS
from shared.store.rows import ROW_COLUMNS


@dataclass(frozen=True)
class StalledRun:
    """A run that has not ended and whose stream recorded nothing for a while."""

    run_id: str
    version: int  # the stream's version: an append expecting it fails if the run moved since
    moved: datetime  # when the store recorded its last event
    idle_seconds: float
    step: str  # the step it waits at (the running bead, else the first pending one)


async def stalled_runs(store, idle_for: float, now: datetime | None = None) -> list[StalledRun]:
    """Runs not ended whose last event was recorded more than `idle_for` seconds before `now`.

    Candidates come from the `runs` read model (status RUNNING); each is checked against the log
    itself (the store's `recorded_at` clock, not a service's `occurred_at`), so a run whose end is
    logged but not yet projected is not stalled."""
    now = now or datetime.now(UTC)
    rows = await store.pool.fetch(
        "SELECT r.run_id, s.version, s.moved, "
        "  (SELECT b.bead_id FROM beads b WHERE b.run_id = r.run_id AND b.status IN ('RUNNING', 'PENDING') "
        "   ORDER BY (b.status = 'RUNNING') DESC, b.seq LIMIT 1) AS step "
        "FROM runs r, LATERAL (SELECT max(e.version) AS version, max(e.recorded_at) AS moved, "
        "  bool_or(e.type = ANY($2::text[])) AS ended FROM events e WHERE e.stream_id = r.run_id) s "
        "WHERE r.status = 'RUNNING' AND NOT s.ended AND s.moved < $1 ORDER BY s.moved",
        now - timedelta(seconds=idle_for), list(STREAM_ENDS),
    )
    return [StalledRun(r["run_id"], r["version"], r["moved"], (now - r["moved"]).total_seconds(),
                       r["step"] or "pipeline") for r in rows]


def target_lock(repo: str, ref: str | None) -> int:
    """The advisory lock key of a repository and ref (the same in every process)."""
    digest = hashlib.sha256(f"request:{repo}\0{ref or ''}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def unfinished_runs(store, repo: str, ref: str | None, conn: Any = None) -> list[str]:
    """Runs requested on `repo` at `ref` (None: its default branch) that have not ended, in the
    log itself (an end not yet projected counts).

    A request that does not decode is no run in progress: the relay never publishes it, so no
    service will act on it (the projector shows it as a failed run)."""
    rows = await (conn or store.pool).fetch(
        f"SELECT {ROW_COLUMNS} FROM events r WHERE r.type = 'PipelineRequested' AND r.data->>'repo' = $1 "
        "AND coalesce(r.data->>'ref', '') = $2 AND NOT EXISTS (SELECT 1 FROM events e "
        "WHERE e.stream_id = r.stream_id AND e.type = ANY($3::text[])) "
        "ORDER BY r.global_position",
        repo, ref or "", list(RUN_ENDS),
    )
    return [e.stream_id for e in store.decode_rows(rows)]


@contextlib.asynccontextmanager
async def target_transaction(store, repo: str, ref: str | None) -> AsyncIterator[tuple[Any, list[str]]]:
    """A transaction holding the lock of `repo` at `ref`, and the runs on it that have not ended.

    Whoever appends a new run's request inside it (on the yielded connection) when the list is
    empty cannot race another request for the same target: the lock is held until commit."""
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", target_lock(repo, ref))
        yield conn, await unfinished_runs(store, repo, ref, conn)


async def find_runs(store, status: str | None = None, limit: int = 50, offset: int = 0) -> list[dict]:
    """Runs, newest first, optionally only those in `status` (the gateway's `/runs`)."""
    rows = await store.pool.fetch(
        "SELECT * FROM runs WHERE ($1::text IS NULL OR status = $1) "
        "ORDER BY started_at DESC NULLS LAST, run_id LIMIT $2 OFFSET $3", status, limit, offset)
    return [dict(r) for r in rows]


async def find_beads(store, run: str | None = None, status: str | None = None, category: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[dict]:
    """Beads of the newest runs first, each run's in chain order; `category` keeps improvements of
    that category (steps have none). The gateway's `/beads`, `repo-pilot beads`."""
    rows = await store.pool.fetch(
        "SELECT b.* FROM beads b JOIN runs r USING (run_id) "
        "WHERE ($1::text IS NULL OR b.run_id = $1) AND ($2::text IS NULL OR b.status = $2) "
        "AND ($3::text IS NULL OR b.metadata->>'category' = $3) "
        "ORDER BY r.started_at DESC NULLS LAST, b.run_id, b.seq, b.bead_id LIMIT $4 OFFSET $5",
        run, status, category, limit, offset)
    return [dict(r) for r in rows]


async def stored_positions(conn, streams: Sequence[str], ids: Sequence[uuid.UUID],
                           ) -> tuple[dict[str, dict[int, uuid.UUID]], dict[uuid.UUID, tuple[str, int]]]:
    """What the log holds of `streams` (stream -> version -> event id) and of the event `ids`
    (id -> (stream, version)): what an import checks a file against."""
    by_stream: dict[str, dict[int, uuid.UUID]] = {}
    for r in await conn.fetch("SELECT stream_id, version, event_id FROM events WHERE stream_id = ANY($1)", streams):
        by_stream.setdefault(r["stream_id"], {})[r["version"]] = r["event_id"]
    rows = await conn.fetch("SELECT stream_id, version, event_id FROM events WHERE event_id = ANY($1)", ids)
    return by_stream, {r["event_id"]: (r["stream_id"], r["version"]) for r in rows}


async def track(conn, pairs: Iterable[tuple[str, uuid.UUID]]) -> None:
    """Tracking rows (consumer, event id), as if each consumer had handled the event (kept once)."""
    if pairs := list(pairs):
        await conn.executemany(
            "INSERT INTO tracking (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", pairs)
