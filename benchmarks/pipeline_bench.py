"""Whole runs with the `llm` engine on the `calc` fixture repository (tests/support/llm_script.py),
the real openai client talking to the scripted model server: orchestration overhead, parallelism
and cost.

- Ours: `System` with the six services in this process, talking through the store, the relay and
  JetStream (what `repo-pilot run` does with its embedded servers).
- In-process baseline: the same route handlers called as plain functions, one after another, each
  output appended to a store of its own schema and dispatched to the next handler straight away
  (the in-process pipeline the original design fell back to). No bus, no StepStarted/Completed.

Times come from the store: a run lasts from its PipelineRequested's `recorded_at` to its
PipelineCompleted's; a step boundary is from an event's `recorded_at` (its append's transaction)
to the `occurred_at` of the StepStarted the consumer made just before calling the next handler.
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from shared.app.bootstrap import bootstrap
from shared.app.replay import replay
from shared.app.runtime import PIPELINE_SERVICES, System, open_store, service_routes
from shared.common.settings import Settings
from shared.events import PipelineRequested, make_event, new_run_stream
from shared.messaging.consumer import group_by_stream
from tests.support.llm_script import CATEGORIES, make_calc_repo, script_happy_path
from tests.support.model_server import ScriptedModelServer

MODEL = "gpt-4.1-mini"  # a priced model name, so cost is accounted
ENDED = ("PipelineCompleted", "PipelineFailed")
# The steps that ask the model, in pipeline order (for listing figures).
STEP_ORDER = ("analyze", "suggest", "implement", "write_tests", "review")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


def bench_settings(nats_url: str, database_url: str, name: str, home: Path, model_url: str, **extra) -> Settings:
    """Settings of one benchmark system: its own schema, stream, subjects and data dir; no `.env`."""
    values = dict(
        NATS_URL=nats_url, DATABASE_URL=database_url, REPO_PILOT_DB_SCHEMA=name,
        REPO_PILOT_STREAM=name.upper(), REPO_PILOT_SUBJECT_PREFIX=name.replace("_", ""),
        REPO_PILOT_HOME=home, OPENAI_BASE_URL=model_url, OPENAI_API_KEY="bench", OPENAI_MODEL=MODEL,
        _env_file=None,
    )
    values.update(extra)
    return Settings(**values)


def request_for(repo: Path) -> PipelineRequested:
    return PipelineRequested(repo=str(repo), engine="llm", categories=list(CATEGORIES))


@dataclass
class RunTiming:
    run_id: str
    status: str
    seconds: float
    boundaries: list[float] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)  # purpose, tokens, error
    chain: list[str] = field(default_factory=list)  # the longest chain of calls made one after another


async def timing(conn: asyncpg.Connection, schema: str, run_id: str) -> RunTiming:
    rows = await conn.fetch(
        f'SELECT event_id, type, recorded_at, occurred_at, causation_id, data FROM "{schema}".events '
        "WHERE stream_id = $1 ORDER BY version", run_id)
    recorded = {r["event_id"]: r["recorded_at"] for r in rows}
    first = rows[0]["recorded_at"]
    end = next((r for r in rows if r["type"] in ENDED), rows[-1])
    boundaries = [
        (r["occurred_at"] - recorded[r["causation_id"]]).total_seconds()
        for r in rows
        if r["type"] == "StepStarted" and r["causation_id"] in recorded
        and _json(r["data"]).get("step") != "merge"  # the merger records its bead at the end
    ]
    calls = [{"purpose": d["purpose"], "tokens": d.get("prompt_tokens", 0) + d.get("completion_tokens", 0),
              "error": d.get("error")}
             for d in (_json(r["data"]) for r in rows if r["type"] == "LlmCallRecorded")]
    status = "completed" if end["type"] == "PipelineCompleted" else "failed"
    return RunTiming(run_id, status, (end["recorded_at"] - first).total_seconds(), boundaries, calls)


def _json(value) -> dict:
    import json

    return json.loads(value) if isinstance(value, str) else dict(value)


async def wait_ended(conn: asyncpg.Connection, schema: str, run_ids: list[str], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    while pending:
        rows = await conn.fetch(f'SELECT stream_id FROM "{schema}".events WHERE stream_id = ANY($1) '
                                "AND type = ANY($2)", list(pending), list(ENDED))
        pending -= {r["stream_id"] for r in rows}
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} run(s) did not end in {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def bus_run(system: System, conn, repo: Path, metadata: dict | None = None) -> RunTiming:
    stream = new_run_stream()
    await system.store.append(stream, [make_event(request_for(repo), stream, metadata=metadata)], 0)
    await wait_ended(conn, system.settings.db_schema, [stream])
    return await timing(conn, system.settings.db_schema, stream)


async def fork_run(system: System, conn, run_id: str, step: str) -> RunTiming:
    """`repo-pilot replay RUN --from-step STEP`: the run's history up to `step` copied, the rest run again."""
    new_run, _ = await replay(system.store, run_id, step, service="bench")
    await wait_ended(conn, system.settings.db_schema, [new_run])
    return await timing(conn, system.settings.db_schema, new_run)


class InProcess:
    """The baseline: the same handlers as plain async functions, dispatched in one process."""

    def __init__(self, settings: Settings, database_url: str):
        self.settings, self.database_url = settings, database_url
        self.routes: dict[str, list] = collections.defaultdict(list)
        for name in PIPELINE_SERVICES:
            for route in service_routes(name):
                self.routes[route.event_type].append((name, route))

    async def __aenter__(self) -> InProcess:
        self.store = await open_store(self.settings, self.database_url)
        self.deps = bootstrap(self.settings, self.store)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.store.close()

    async def run(self, conn, repo: Path) -> RunTiming:
        stream = new_run_stream()
        queue = collections.deque(await self.store.append(stream, [make_event(request_for(repo), stream)], 0))
        while queue:
            event = queue.popleft()
            for service, route in self.routes.get(event.type, []):
                outputs = await route.handler(event, self.deps)
                if outputs:
                    queue.extend(await self.store.append_streams(group_by_stream(outputs),
                                                                 tracking=(service, event.event_id)))
        return await timing(conn, self.settings.db_schema, stream)


def longest_chain(timeline: list[tuple[float, float, str]]) -> list[str]:
    """The purposes of the longest chain of calls each sent after the one before was answered, by
    another step: with a delay on every answer, the calls a run must wait for one after another.
    Calls of one step are independent by design, so a step that makes them wait for each other
    shows as a run over its critical path, not as a longer path."""
    calls = sorted(timeline)
    best: list[list[str]] = []
    for i, (start, _, purpose) in enumerate(calls):
        step = purpose.split(":")[0]
        before = [best[j] for j in range(i) if calls[j][1] <= start and calls[j][2].split(":")[0] != step]
        best.append([*max(before, key=len, default=[]), purpose])
    return max(best, key=len, default=[])


async def timed_run(model: ScriptedModelServer, run) -> RunTiming:
    """`run()`, with the chain of its model calls as the scripted server saw them."""
    seen = len(model.timeline)
    timing = await run()
    timing.chain = longest_chain(model.timeline[seen:])
    return timing


def tokens_by_step(calls: list[dict]) -> dict[str, int]:
    out: dict[str, int] = collections.Counter()
    for c in calls:
        out[c["purpose"].split(":")[0]] += c["tokens"]
    return dict(out)


def scripted_server(delay: float = 0.0) -> ScriptedModelServer:
    server = ScriptedModelServer(answer_delay=delay)
    script_happy_path(server)
    return server


async def pipeline_benchmarks(nats_url: str, database_url: str, tag: str, tmp: Path, runs: int, delay: float,
                              delayed_runs: int) -> dict:
    """Orchestration (instant model), parallelism (`delay` s per call) and cost/replay figures."""
    results: dict = {"bus": [], "direct": [], "bus_delay": [], "sequential_delay": [], "replay": None}
    with scripted_server() as model, scripted_server() as sequential_model:
        ours = bench_settings(nats_url, database_url, f"bench_pipe_{tag}", tmp / "home-bus", model.base_url,
                              REPO_PILOT_LLM_CONCURRENCY=8)
        base = bench_settings(nats_url, database_url, f"bench_direct_{tag}", tmp / "home-direct", model.base_url,
                              REPO_PILOT_LLM_CONCURRENCY=8)
        seq = bench_settings(nats_url, database_url, f"bench_seq_{tag}", tmp / "home-seq",
                             sequential_model.base_url, REPO_PILOT_LLM_CONCURRENCY=1)
        conn = await asyncpg.connect(database_url)
        n = 0

        def repo() -> Path:
            nonlocal n
            n += 1
            return make_calc_repo(tmp / f"calc-{n}")

        try:
            async with System(ours, services=list(PIPELINE_SERVICES)) as system, \
                    InProcess(base, database_url) as direct, InProcess(seq, database_url) as sequential:
                await bus_run(system, conn, repo())  # warm-up: first imports, first connections
                for i in range(runs):  # taking turns, so drifting load hits both sides
                    order = [("bus", lambda: bus_run(system, conn, repo())), ("direct", lambda: direct.run(conn, repo()))]
                    for side, go in order if i % 2 == 0 else reversed(order):
                        results[side].append(await go())
                first = results["bus"][0]
                before = len(model.requests)
                results["replay"] = (first, await bus_run(system, conn, repo(), {"replayed_from": first.run_id}),
                                     len(model.requests) - before)
                before = len(model.requests)
                results["fork"] = (await fork_run(system, conn, first.run_id, "review"), len(model.requests) - before)
                model.answer_delay = sequential_model.answer_delay = delay
                for i in range(delayed_runs):
                    order = [("bus_delay", lambda: timed_run(model, lambda: bus_run(system, conn, repo()))),
                             ("sequential_delay", lambda: sequential.run(conn, repo()))]
                    for side, go in order if i % 2 == 0 else reversed(order):
                        results[side].append(await go())
        finally:
            for schema in (ours.db_schema, base.db_schema, seq.db_schema):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()
    return results


def rows(results: dict, delay: float) -> tuple[list, list[str]]:
    from benchmarks.report import Row

    bus, direct = results["bus"], results["direct"]
    notes = []
    failed = [t for side in ("bus", "direct", "bus_delay", "sequential_delay") for t in results[side]
              if t.status != "completed"]
    if failed:
        notes.append(f"pipeline: {len(failed)} run(s) ended failed: {', '.join(t.run_id for t in failed)}")
    boundaries = [b for t in bus for b in t.boundaries]
    ours_s, direct_s = [t.seconds for t in bus], [t.seconds for t in direct]
    out = [
        Row("orchestration", f"step boundary p50 ({len(boundaries)} boundaries)",
            statistics.median(boundaries) * 1e3, None, "ms", aim=10, absolute=True,
            note="event appended (its transaction) → the next handler starts; baseline: a function call (~0)"),
        Row("orchestration", "step boundary p95", percentile(boundaries, 0.95) * 1e3, None, "ms"),
        Row("orchestration", f"run p50, instant model ({len(bus)} runs each)", statistics.median(ours_s),
            statistics.median(direct_s), "s", aim=1.5),
        Row("orchestration", "run p95", percentile(ours_s, 0.95), percentile(direct_s, 0.95), "s"),
    ]
    if results["bus_delay"]:
        calls = bus[0].calls
        # Calls made one after another, as the server saw them: steps follow each other, and one
        # step can chain calls too (a repair after a draft; the docs refresh after the merge asks
        # `analyze` again). A needless wait inside a step shows here as a longer chain.
        chains = sorted((t.chain for t in results["bus_delay"]), key=len)
        chain = chains[(len(chains) - 1) // 2]  # the median run's
        levels = len(chain)
        instant = statistics.median(direct_s)
        critical = instant + levels * delay
        seq_s = statistics.median(t.seconds for t in results["sequential_delay"])
        ours_delay = statistics.median(t.seconds for t in results["bus_delay"])
        out += [
            Row("parallelism", f"run with {delay * 1e3:.0f} ms per model call vs critical path", ours_delay, critical,
                "s", aim=1.2,
                note=f"critical path = in-process run with an instant model ({instant:.2f} s) + the longest "
                     f"chain of calls the run made one after another ({levels}: {' → '.join(chain)}) × {delay:g} s; "
                     f"{len(calls)} calls per run"),
            Row("parallelism", "same run vs sequential pipeline (one call at a time)", ours_delay, seq_s, "s",
                note="baseline: the in-process handlers with the endpoint limited to 1 request at a time"),
        ]
    first, replay, made = results["replay"]
    spent = sum(c["tokens"] for c in first.calls)
    for step, tokens in sorted(tokens_by_step(first.calls).items(), key=lambda kv: STEP_ORDER.index(kv[0])
                               if kv[0] in STEP_ORDER else 99):
        n_calls = sum(1 for c in first.calls if c["purpose"].split(":")[0] == step)
        out.append(Row("cost", f"tokens, step {step} ({n_calls} calls)", tokens, None, "tok"))
    out.append(Row("cost", f"tokens per run ({len(first.calls)} calls)", spent, None, "tok"))
    avoided = len(first.calls) - made
    out.append(Row("cost", "replay: model calls made vs original run", made, len(first.calls), "calls",
                   note=f"{avoided} of {len(first.calls)} calls (~{spent * avoided // max(1, len(first.calls)):,} "
                        f"tokens) answered from the recorded calls; replay took {replay.seconds:.1f} s vs "
                        f"{first.seconds:.1f} s"))
    fork, fork_made = results["fork"]
    avoided = len(first.calls) - fork_made
    out.append(Row("cost", "fork from review: model calls made vs original run", fork_made, len(first.calls),
                   "calls", note=f"{avoided} of {len(first.calls)} calls (~{spent * avoided // max(1, len(first.calls)):,} "
                                 f"tokens) avoided: the steps before review come with the copied history; the fork "
                                 f"took {fork.seconds:.1f} s ({fork.status}) vs {first.seconds:.1f} s"))
    return out, notes
