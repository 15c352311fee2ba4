"""The pure fold of the log into read models: (run row, bead rows, event) -> new rows.

No I/O: `Projector` (`projections.py`) reads the log and writes what this returns. An event whose
fold raises changes nothing and comes back from `fold_all` as an `Unprojectable`, which the
projector quarantines, as it does a row that does not decode (`rows.decode_row`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.events import STEPS, STREAM_ENDS, Envelope
from shared.events.envelope import STREAM_ID
from shared.store.rows import BadRow

if TYPE_CHECKING:  # imported when metrics are recorded: a read command's catch-up that finds
    # nothing to project never loads OpenTelemetry
    from shared.common import telemetry

PENDING, RUNNING, COMPLETED, FAILED, SKIPPED = "PENDING", "RUNNING", "COMPLETED", "FAILED", "SKIPPED"
GEN_STEPS: tuple[str, ...] = ("prompt", "agent", "validate")
REQUESTS = ("PipelineRequested", "FeatureGenerationRequested")
ENDS = STREAM_ENDS
_BIGINT = 2**63 - 1
_GEN_STEP_OF = {"FeaturePromptBuilt": "prompt", "FeatureGenerated": "agent", "FeatureValidated": "validate"}


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
    """Apply one event to a run row and its beads; returns the new run row.

    `beads` (bead id -> row) gets new or replaced entries; neither `run` nor a bead row it held is
    changed in place, so a fold that raises is undone by restoring the mapping."""
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
        # A copy: the caller changes it, and `fold_all` must be able to drop a fold that raised.
        bead = dict(beads[step]) if step in beads else _bead(
            rid, step, len(beads) + 100, "improvement" if ":" in step else "step", step)
        beads[step] = bead
        return bead

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
        for key in list(beads):
            if beads[key]["status"] in (PENDING, RUNNING):
                bead = bead_for(key)
                _end(bead, SKIPPED if bead["status"] == PENDING else FAILED, at, f"pipeline failed at {d.step}")
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
) -> list[BadRow]:
    """Fold `events`, in order, into `runs` (by run id) and `beads` (by run id, then bead id).

    An event whose fold raises changes nothing and is returned as a BadRow (to be quarantined):
    like a row that does not decode (`rows.decode_row`), one event never stops a projection."""
    unfoldable: list[BadRow] = []
    for event in events:
        own = beads.setdefault(event.stream_id, {})
        kept = dict(own)
        try:
            folded = fold(runs.get(event.stream_id), own, event)
        except Exception as exc:  # noqa: BLE001 - whatever the event makes the fold raise is recorded
            own.clear()
            own.update(kept)
            unfoldable.append(unprojectable(event, "fold", exc))
            continue
        if folded is not None:
            runs[event.stream_id] = folded
    return unfoldable


class Unprojectable(BadRow):
    """An event that decodes but that the projector could not fold or write: quarantined (kind
    `unprojectable`) and stepped past, like a row that does not decode."""

    __slots__ = ()
    kind = "unprojectable"


def unprojectable(event: Envelope | BadRow, stage: str, exc: BaseException) -> Unprojectable:
    """The quarantine entry of `event`, which the projector could not `stage` (fold, write)."""
    reason = " ".join(f"{stage}: {type(exc).__name__}: {exc}".split())[:500]
    return Unprojectable(event.global_position, event.stream_id[:200], event.type[:200], reason, event.occurred_at)


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
    if metrics is None:
        from shared.common.telemetry import default_metrics

        metrics = default_metrics()
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
