"""Read models folded from the log: pipeline runs and their bead chains.

`fold` (`fold.py`) is pure: (run row, bead rows, event) -> new rows. `Projector` applies it in batches,
writing the rows and its checkpoint in one transaction, so a crash never half-applies a batch;
`rebuild` replays from position 0 through the very same `fold_all`, which is why a rebuild
produces exactly the rows live projection did. It folds the whole log in memory first and then
truncates and writes each row once, because loading and rewriting the same rows batch after
batch was most of a rebuild's cost besides parsing.

Both read the log through the store's one row decoder (`shared.store.rows.decode_row`), so they
fold exactly the events the relay publishes. A row that does not decode is quarantined (recorded
in `relay_faults`, which `repo-pilot health` lists) and folded as what it is: a request that
cannot be read becomes a FAILED run saying why, any other bad row changes nothing. An event that
decodes but cannot be folded, or whose rows Postgres refuses, is quarantined the same way (kind
`unprojectable`) and projection goes on past it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from typing import TYPE_CHECKING

import asyncpg

from shared.events import Envelope
from shared.store.fold import GEN_STEPS, ended, fold_all, record_metrics, statuses, unprojectable
from shared.store.postgres import wait_for_any
from shared.store.rows import BadRow

if TYPE_CHECKING:  # OpenTelemetry loads when a batch is counted (fold.record_metrics), not for a read
    from shared.common import telemetry

__all__ = ["GEN_STEPS", "Projector", "dumps", "get_run", "list_runs"]  # GEN_STEPS: where the generator reads it

log = logging.getLogger("repo_pilot.projector")

# What Postgres (or asyncpg's encoders) raise for a row it refuses: a value out of a column's or
# an index's range (e.g. a step name longer than a btree entry). Connection errors are not here:
# the supervisor retries those.
UNWRITABLE = (
    asyncpg.exceptions.DataError, asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError, asyncpg.exceptions._base.DataError, ValueError, OverflowError,
)
RUN_COLUMNS = (
    "run_id", "kind", "repo", "status", "engine", "threshold", "categories", "branch", "base_sha",
    "head_sha", "score", "passed", "merged", "pr_url", "error", "tests", "cost_usd", "tokens",
    "started_at", "finished_at", "last_position",
)
BEAD_COLUMNS = (
    "run_id", "bead_id", "seq", "kind", "title", "status", "started_at", "ended_at", "duration_ms",
    "error", "metadata",
)


class Projector:
    """Folds the log into `runs` and `beads`, checkpointing in the same transaction."""

    checkpoint_name = "projector"

    def __init__(self, store, batch: int = 2000, metrics: telemetry.Metrics | None = None):
        self.store = store
        self.batch = batch
        self.metrics = metrics  # None: the process-wide instruments

    async def run_once(self, *, count: bool = True) -> int:
        """Project everything not yet projected; returns how many events were applied."""
        total = 0
        async with aclosing(self._pages(await self.store.get_checkpoint(self.checkpoint_name))) as pages:
            async for events, end in pages:
                total += await self.apply(events, end, count=count)  # re-checks the checkpoint under a lock
        return total

    async def apply(self, events: list[Envelope | BadRow], end: int | None = None, *, count: bool = True) -> int:
        """Fold `events` (bad rows among them are quarantined) and move the checkpoint to `end`
        (the last row read) or to the last event.

        An event whose rows Postgres refuses (a value its column or index cannot hold) makes the
        batch be applied again one event at a time, each write in a savepoint: that event is
        quarantined and the others are projected. Errors of the connection still raise (the
        supervisor retries). Returns how many events were projected; `count=False` records no
        metrics (a rebuild: history was counted when it happened)."""
        try:
            projected, done = await self._apply(events, end)
        except UNWRITABLE as exc:
            log.warning("a batch up to position %s cannot be written (%s): applying it event by event",
                        end, exc)
            projected, done = [], []
            for event in events:
                one, ended_here = await self._apply([event], event.global_position, isolate=True)
                projected += one
                done += ended_here
            await self._apply([], end)
        if count:  # committed: counted once
            record_metrics(projected, done, self.metrics)
        return len(projected)

    async def _apply(self, events: list[Envelope | BadRow], end: int | None, isolate: bool = False,
                     ) -> tuple[list[Envelope], list[dict]]:
        """One transaction of `apply`: the events projected and what they ended."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            position = await self._lock_checkpoint(conn)
            events = [e for e in events if e.global_position > position]
            end = max(end or 0, events[-1].global_position if events else 0)
            if end <= position:
                return [], []
            run_ids = sorted({e.stream_id for e in events})
            runs = {r["run_id"]: dict(r) for r in await conn.fetch(
                "SELECT * FROM runs WHERE run_id = ANY($1::text[])", run_ids)}
            beads: dict[str, dict[str, dict]] = {}
            for r in await conn.fetch("SELECT * FROM beads WHERE run_id = ANY($1::text[])", run_ids):
                beads.setdefault(r["run_id"], {})[r["bead_id"]] = dict(r)
            before = statuses(runs, beads)
            refused = [e for e in events if isinstance(e, BadRow)] + fold_all(runs, beads, events)
            if isolate:
                try:
                    async with conn.transaction():  # a savepoint: a refused write leaves the rest
                        await self._write_rows(conn, runs, beads)
                except UNWRITABLE as exc:
                    refused += [unprojectable(e, "write", exc) for e in events if not isinstance(e, BadRow)]
                    runs, beads = {}, {}
            await self._write(conn, {} if isolate else runs, {} if isolate else beads, end, refused)
        skipped = {r.global_position for r in refused}
        # Bad rows are no events (their type may be anything).
        return [e for e in events if e.global_position not in skipped], ended(before, runs, beads)

    async def rebuild(self) -> int:
        """Truncate the read models and replay the whole log from position 0; returns the count.

        The rows are folded in memory (the read models, not the log, are held) and written with
        the checkpoint in one transaction: readers and a live projector wait for it and then see
        the rebuilt tables whole; a rebuild that fails leaves the old ones in place. When an
        event's rows cannot be written, the log is projected again from 0 the way `apply` does
        (isolating that event), and readers see the tables fill batch by batch.
        """
        runs: dict[str, dict] = {}
        beads: dict[str, dict[str, dict]] = {}
        refused: list[BadRow] = []
        count = position = 0
        async with aclosing(self._pages(0)) as pages:
            async for events, end in pages:
                unfoldable = fold_all(runs, beads, events)
                page_refused = [e for e in events if isinstance(e, BadRow)] + unfoldable
                refused += page_refused
                count += len(events) - len(page_refused)
                position = end
        try:
            async with self.store.pool.acquire() as conn, conn.transaction():
                await self._lock_checkpoint(conn)
                await conn.execute("TRUNCATE runs, beads")
                await self._write(conn, runs, beads, position, refused)
        except UNWRITABLE as exc:
            log.warning("rebuilt rows cannot be written (%s): projecting the log again event by event", exc)
            async with self.store.pool.acquire() as conn, conn.transaction():
                await self._lock_checkpoint(conn)
                await conn.execute("TRUNCATE runs, beads")
                await self.store.set_checkpoint(self.checkpoint_name, 0, conn=conn)
            count = await self.run_once(count=False)
        return count

    async def _pages(self, after: int) -> AsyncIterator[tuple[list[Envelope | BadRow], int]]:
        """The log after `after` in pages (events and bad rows in log order, position of the last
        row read), reading the next page while the caller uses this one.

        A row that does not decode comes as its BadRow (the store also keeps it in `skipped`), so
        one bad row never stops a projection or a rebuild, and a page of only such rows moves on."""
        events, end = await self._page(after)
        while end > after:
            following = asyncio.create_task(self._page(end))
            try:
                yield events, end
            except BaseException:  # the caller failed or stopped early
                following.cancel()
                raise
            after = end
            events, end = await following

    async def _page(self, after: int) -> tuple[list[Envelope | BadRow], int]:
        bad: list[BadRow] = []
        events, end = await self.store.read_page(after, self.batch, bad)
        return (sorted([*events, *bad], key=lambda e: e.global_position) if bad else events), end

    async def _lock_checkpoint(self, conn) -> int:
        """The checkpoint, locked until the transaction ends, so two projectors never apply the
        same batch twice (nor a projector and a rebuild interleave their writes)."""
        await conn.execute(
            "INSERT INTO checkpoints (name, position) VALUES ($1, 0) ON CONFLICT DO NOTHING",
            self.checkpoint_name,
        )
        return await conn.fetchval(
            "SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE", self.checkpoint_name
        )

    async def _write(self, conn, runs: dict, beads: dict[str, dict[str, dict]], position: int,
                     refused: Iterable[BadRow] = ()) -> None:
        await self.store.quarantine(list(refused), by=self.checkpoint_name, conn=conn)
        await self._write_rows(conn, runs, beads)
        await self.store.set_checkpoint(self.checkpoint_name, position, conn=conn)

    @staticmethod
    async def _write_rows(conn, runs: dict, beads: dict[str, dict[str, dict]]) -> None:
        await _upsert(conn, "runs", RUN_COLUMNS, ("run_id",), runs.values())
        await _upsert(conn, "beads", BEAD_COLUMNS, ("run_id", "bead_id"),
                      (b for bs in beads.values() for b in bs.values()))

    async def run(self, stop: asyncio.Event, poll_interval: float = 1.0) -> None:
        """Project live until `stop` is set, woken by the store's NOTIFY (polling as a fallback)."""
        await wait_for_log(self.store, stop, self.run_once, poll_interval)


async def wait_for_log(store, stop: asyncio.Event, work, poll_interval: float = 1.0) -> None:
    """Call `work()` whenever the log grows (NOTIFY) or every `poll_interval`, until `stop`."""
    async with store.appended() as woken:
        while not stop.is_set():
            woken.clear()
            await work()
            await wait_for_any([woken, stop], poll_interval)


async def _upsert(conn, table: str, columns: tuple[str, ...], key: tuple[str, ...], rows: Iterable[dict]) -> None:
    rows = list(rows)
    if not rows:
        return
    cols = ", ".join(columns)
    params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    sql = (f"INSERT INTO {table} ({cols}) VALUES ({params}) "
           f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")
    await conn.executemany(sql, [tuple(r[c] for c in columns) for r in rows])


async def list_runs(store, limit: int = 50) -> list[dict]:
    rows = await store.pool.fetch("SELECT * FROM runs ORDER BY started_at DESC NULLS LAST LIMIT $1", limit)
    return [dict(r) for r in rows]


async def get_run(store, run_id: str) -> tuple[dict | None, list[dict]]:
    run = await store.pool.fetchrow("SELECT * FROM runs WHERE run_id = $1", run_id)
    beads = await store.pool.fetch("SELECT * FROM beads WHERE run_id = $1 ORDER BY seq, bead_id", run_id)
    return (dict(run) if run else None), [dict(b) for b in beads]


def dumps(rows: list[dict]) -> str:
    return json.dumps(rows, default=str, sort_keys=True)
