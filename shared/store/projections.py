"""Read models folded from the log: pipeline runs and their bead chains.

`fold` is pure: (run row, bead rows, event) -> new rows. `Projector` applies it in batches,
writing the rows and its checkpoint in one transaction, so a crash never half-applies a batch;
`rebuild` replays from position 0 through the very same `fold_all`, which is why a rebuild
produces exactly the rows live projection did. It folds the whole log in memory first and then
truncates and writes each row once, because loading and rewriting the same rows batch after
batch was most of a rebuild's cost besides parsing.

Both read the log through the store's one row decoder (`shared.store.rows.decode_row`), so they
fold exactly the events the relay publishes. A row that does not decode is quarantined (recorded
in `relay_faults`, which `repo-pilot health` lists) and folded as what it is: a request that
cannot be read becomes a FAILED run saying why, any other bad row changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from datetime import datetime
from typing import Any

from shared.common import telemetry
from shared.events import STEPS, STREAM_ENDS, Envelope
from shared.events.envelope import STREAM_ID
from shared.store.postgres import wait_for_any
from shared.store.rows import BadRow

log = logging.getLogger("repo_pilot.projector")

PENDING, RUNNING, COMPLETED, FAILED, SKIPPED = "PENDING", "RUNNING", "COMPLETED", "FAILED", "SKIPPED"
GEN_STEPS: tuple[str, ...] = ("prompt", "agent", "validate")
REQUESTS = ("PipelineRequested", "FeatureGenerationRequested")
ENDS = STREAM_ENDS
_BIGINT = 2**63 - 1
_GEN_STEP_OF = {"FeaturePromptBuilt": "prompt", "FeatureGenerated": "agent", "FeatureValidated": "validate"}

RUN_COLUMNS = (
    "run_id", "kind", "repo", "status", "engine", "threshold", "categories", "branch", "base_sha",
    "head_sha", "score", "passed", "merged", "pr_url", "error", "tests", "cost_usd", "tokens",
    "started_at", "finished_at", "last_position",
)
BEAD_COLUMNS = (
    "run_id", "bead_id", "seq", "kind", "title", "status", "started_at", "ended_at", "duration_ms",
    "error", "metadata",
)


def _bead(run_id: str, bead_id: str, seq: int, kind: str, title: str) -> dict[str, Any]:
    return {
        "run_id": run_id, "bead_id": bead_id, "seq": seq, "kind": kind, "title": title,
        "status": PENDING, "started_at": None, "ended_at": None, "duration_ms": None,
        "error": None, "metadata": {},
    }


# `meta` is a dict, not keyword arguments: its keys come from payloads (StepCompleted.metadata)
# and must never collide with a parameter's name.
def _start(bead: dict, at: datetime, meta: dict[str, Any]) -> None:
    bead["status"] = RUNNING
    bead["started_at"] = bead["started_at"] or at
    bead["ended_at"], bead["duration_ms"], bead["error"] = None, None, None
    bead["metadata"] = {**bead["metadata"], **meta}


def _end(bead: dict, status: str, at: datetime, error: str | None = None, meta: dict | None = None) -> None:
    bead["status"] = status
    bead["started_at"] = bead["started_at"] or at
    bead["ended_at"] = at
    bead["duration_ms"] = int((at - bead["started_at"]).total_seconds() * 1000)
    bead["error"] = error
    bead["metadata"] = {**bead["metadata"], **(meta or {})}


def fold(run: dict | None, beads: dict[str, dict], event: Envelope | BadRow) -> dict | None:
    """Apply one event to a run row and its beads (mutating `beads`); returns the new run row."""
    if isinstance(event, BadRow):
        return _unreadable(run, event)
    d, at, rid = event.data, event.occurred_at, event.stream_id
    t = event.type
    if t == "PipelineRequested":
        run = _new_run(event, "run", repo=d.repo, engine=d.engine, threshold=d.threshold,
                       categories=list(d.categories))
        for i, step in enumerate(STEPS):
            title = f"{step} ({d.engine or 'auto'} engine)" if step == "analyze" else step
            beads[step] = _bead(rid, step, i, "step", title)
        return run
    if t == "FeatureGenerationRequested":
        run = _new_run(event, "gen", repo=d.repo_path or d.task_dir, engine="llm", threshold=None,
                       categories=[])
        for i, step in enumerate(GEN_STEPS):
            beads[step] = _bead(rid, step, i, "step", step)
        return run
    if run is None:
        return None  # an event of a stream whose start we never saw (e.g. malformed history)
    run = dict(run, last_position=event.global_position)

    def bead_for(step: str) -> dict:
        if step not in beads:
            beads[step] = _bead(rid, step, len(beads) + 100, "improvement" if ":" in step else "step", step)
        return beads[step]

    if t == "StepStarted":
        _start(bead_for(d.step), at, {"attempt": d.attempt, **({"engine": d.engine} if d.engine else {})})
    elif t == "StepCompleted":
        _end(bead_for(d.step), COMPLETED, at, None, {"summary": d.summary, **d.metadata})
    elif t == "StepFailed":
        _end(bead_for(d.step), FAILED, at, d.error, {"attempt": d.attempt})
    elif t == "StepSkipped":
        _end(bead_for(d.step), SKIPPED, at, d.reason)
    elif t == "RepoAnalyzed":
        run.update(base_sha=d.base_sha, engine=d.engine)
    elif t == "ImprovementsSuggested":
        for i, imp in enumerate(d.improvements):
            b = _bead(rid, f"improvement:{imp.id}", 100 + i, "improvement", f"{imp.category}: {imp.title}")
            b["metadata"] = {"category": imp.category, "files": imp.files, "rule": imp.rule}
            beads.setdefault(b["bead_id"], b)
    elif t == "ChangeApplied":
        _end(bead_for(f"improvement:{d.improvement_id}"), COMPLETED, at, None,
             {"commit": d.commit_sha, "files": d.files})
    elif t == "ChangeRejected":
        _end(bead_for(f"improvement:{d.improvement_id}"), SKIPPED, at, d.reason)
    elif t == "ChangesCommitted":
        run.update(head_sha=d.head_sha)  # the branch exists for the user only once pushed
    elif t == "ChangesReviewed":
        run.update(score=d.overall, passed=d.passed)
    elif t == "TestsCompleted":
        run["tests"] = {
            "groups": [g.model_dump(exclude={"output"}) for g in d.groups],
            "own_before": d.own_before.model_dump(exclude={"output"}) if d.own_before else None,
            "own_after": d.own_after.model_dump(exclude={"output"}) if d.own_after else None,
            "regressed": d.regressed,
        }
    elif t == "MergeCompleted":
        run.update(merged=d.merged, pr_url=d.pr_url, branch=d.branch if d.pushed else None)
        if not d.merged:
            run["error"] = d.reason or None
    elif t == "LlmCallRecorded":
        run["cost_usd"] = round(run["cost_usd"] + d.cost_usd, 6)
        # Clamped to the column's range: a recorded count is never a reason to stop projecting.
        run["tokens"] = max(-_BIGINT, min(_BIGINT, run["tokens"] + d.prompt_tokens + d.completion_tokens))
    elif t == "PipelineCompleted":
        run.update(status=COMPLETED, finished_at=at)
    elif t == "PipelineFailed":
        run.update(status=FAILED, finished_at=at, error=f"{d.step}: {d.error}")
        for bead in beads.values():
            if bead["status"] in (PENDING, RUNNING):
                _end(bead, SKIPPED if bead["status"] == PENDING else FAILED, at,
                     f"pipeline failed at {d.step}")
    elif t in _GEN_STEP_OF:
        step = _GEN_STEP_OF[t]
        _end(bead_for(step), COMPLETED, at, None)
        if t == "FeatureValidated":
            run.update(status=COMPLETED, finished_at=at, passed=d.valid, error=None if d.valid else d.reason)
        elif t == "FeatureGenerated":
            # None: the model has no price (the job was limited by tokens and says so)
            run["cost_usd"] = round(run["cost_usd"] + (d.cost_usd or 0.0), 6)
    return run


def _unreadable(run: dict | None, row: BadRow) -> dict | None:
    """A request that cannot be read starts a run that has already failed, saying why (no
    service will ever act on it: the relay does not publish it). An end that cannot be read ends
    the run as failed (the store counts its run as ended: `unfinished_runs`, the sweeper). Other
    bad rows change nothing."""
    if row.type in ENDS and run is not None and run["status"] == RUNNING:
        return dict(run, status=FAILED, finished_at=row.occurred_at, last_position=row.global_position,
                    error=f"end: the run's {row.type} could not be read: {row.reason}")
    if row.type not in REQUESTS or run is not None or not STREAM_ID.fullmatch(row.stream_id):
        return run
    return {
        **_new_run(row, row.stream_id.split("-", 1)[0], repo=row.repo, engine=None, threshold=None,
                   categories=[]),
        "status": FAILED, "finished_at": row.occurred_at,
        "error": f"request: the request could not be read: {row.reason}",
    }


def fold_all(
    runs: dict[str, dict], beads: dict[str, dict[str, dict]], events: Iterable[Envelope | BadRow]
) -> None:
    """Fold `events`, in order, into `runs` (by run id) and `beads` (by run id, then bead id)."""
    for event in events:
        folded = fold(runs.get(event.stream_id), beads.setdefault(event.stream_id, {}), event)
        if folded is not None:
            runs[event.stream_id] = folded


def _new_run(event: Envelope | BadRow, kind: str, **fields: Any) -> dict:
    return {
        "run_id": event.stream_id, "kind": kind, "status": RUNNING, "branch": None, "base_sha": None,
        "head_sha": None, "score": None, "passed": None, "merged": None, "pr_url": None, "error": None,
        "tests": {}, "cost_usd": 0.0, "tokens": 0, "started_at": event.occurred_at, "finished_at": None,
        "last_position": event.global_position, **fields,
    }


def statuses(runs: dict, beads: dict[str, dict[str, dict]]) -> dict[tuple[str, str], str]:
    """(run id, "" or bead id) -> status, to tell afterwards what a batch ended."""
    found = {(rid, ""): r["status"] for rid, r in runs.items()}
    for rid, bs in beads.items():
        found.update({(rid, bid): b["status"] for bid, b in bs.items()})
    return found


def ended(before: dict[tuple[str, str], str], runs: dict, beads: dict[str, dict[str, dict]]) -> list[dict]:
    """The runs and step beads a batch brought to an end (pure): what the metrics count.

    A run: {"run": row}; a step (not an improvement): {"step": name, "status", "seconds"}."""
    done = []
    for rid, run in runs.items():
        if run["status"] in (COMPLETED, FAILED) and before.get((rid, "")) != run["status"]:
            done.append({"run": run})
    for rid, bs in beads.items():
        for bid, b in bs.items():
            if (b["kind"] == "step" and b["status"] in (COMPLETED, FAILED) and b["duration_ms"] is not None
                    and before.get((rid, bid)) != b["status"]):
                done.append({"step": bid, "status": b["status"], "seconds": b["duration_ms"] / 1000})
    return done


def record_metrics(events: list, done: list[dict], metrics: telemetry.Metrics | None = None) -> None:
    """Count the events a live batch projected and the runs and steps it ended (never on a
    rebuild: history was counted when it happened). The one projector that applies a batch
    counts it, so no replica of a service counts a run twice."""
    metrics = metrics or telemetry.default_metrics()
    for event in events:
        metrics.record_event(event.type)
    for item in done:
        if "run" in item:
            run = item["run"]
            metrics.record_run(run_outcome(run), **run_labels(run))
        else:
            metrics.record_step(item["step"], item["seconds"], status=item["status"].lower())


def run_outcome(run: dict) -> str:
    """`completed` or `failed`: how a run or a generation job ended."""
    return "failed" if run["status"] == FAILED else "completed"


def run_labels(run: dict) -> dict[str, str]:
    """What else `runs_total` says of an end: the verdict of a completed run (`merged`,
    `not_merged`; `valid`, `not_valid` for a generation job) or the step a failed run failed at
    (from its error, "<step>: <reason>")."""
    if run["status"] == FAILED:
        return {"step": (run.get("error") or "unknown").split(":", 1)[0]}
    if run["kind"] == "gen":
        return {"verdict": "valid" if run.get("passed") else "not_valid"}
    return {"verdict": "merged" if run.get("merged") else "not_merged"}


class Projector:
    """Folds the log into `runs` and `beads`, checkpointing in the same transaction."""

    checkpoint_name = "projector"

    def __init__(self, store, batch: int = 2000, metrics: telemetry.Metrics | None = None):
        self.store = store
        self.batch = batch
        self.metrics = metrics  # None: the process-wide instruments

    async def run_once(self) -> int:
        """Project everything not yet projected; returns how many events were applied."""
        total = 0
        async with aclosing(self._pages(await self.store.get_checkpoint(self.checkpoint_name))) as pages:
            async for events, end in pages:
                await self.apply(events, end)  # re-checks the checkpoint under a lock
                total += sum(not isinstance(e, BadRow) for e in events)
        return total

    async def apply(self, events: list[Envelope | BadRow], end: int | None = None) -> None:
        """Fold `events` (bad rows among them are quarantined) and move the checkpoint to `end`
        (the last row read) or to the last event."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            position = await self._lock_checkpoint(conn)
            events = [e for e in events if e.global_position > position]
            end = max(end or 0, events[-1].global_position if events else 0)
            if end <= position:
                return
            run_ids = sorted({e.stream_id for e in events})
            runs = {r["run_id"]: dict(r) for r in await conn.fetch(
                "SELECT * FROM runs WHERE run_id = ANY($1::text[])", run_ids)}
            beads: dict[str, dict[str, dict]] = {}
            for r in await conn.fetch("SELECT * FROM beads WHERE run_id = ANY($1::text[])", run_ids):
                beads.setdefault(r["run_id"], {})[r["bead_id"]] = dict(r)
            before = statuses(runs, beads)
            fold_all(runs, beads, events)
            await self._write(conn, runs, beads, end, events)
        # Committed: counted once. Bad rows are no events (their type may be anything).
        record_metrics([e for e in events if not isinstance(e, BadRow)], ended(before, runs, beads), self.metrics)

    async def rebuild(self) -> int:
        """Truncate the read models and replay the whole log from position 0; returns the count.

        The rows are folded in memory (the read models, not the log, are held) and written with
        the checkpoint in one transaction: readers and a live projector wait for it and then see
        the rebuilt tables whole; a rebuild that fails leaves the old ones in place.
        """
        runs: dict[str, dict] = {}
        beads: dict[str, dict[str, dict]] = {}
        bad: list[BadRow] = []
        count = position = 0
        async with aclosing(self._pages(0)) as pages:
            async for events, end in pages:
                fold_all(runs, beads, events)
                page_bad = [e for e in events if isinstance(e, BadRow)]
                bad += page_bad
                count += len(events) - len(page_bad)
                position = end
        async with self.store.pool.acquire() as conn, conn.transaction():
            await self._lock_checkpoint(conn)
            await conn.execute("TRUNCATE runs, beads")
            await self._write(conn, runs, beads, position, bad)
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
                     events: Iterable[Envelope | BadRow] = ()) -> None:
        await self.store.quarantine([e for e in events if isinstance(e, BadRow)], by=self.checkpoint_name,
                                    conn=conn)
        await _upsert(conn, "runs", RUN_COLUMNS, ("run_id",), runs.values())
        await _upsert(conn, "beads", BEAD_COLUMNS, ("run_id", "bead_id"),
                      (b for bs in beads.values() for b in bs.values()))
        await self.store.set_checkpoint(self.checkpoint_name, position, conn=conn)

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
