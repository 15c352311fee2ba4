"""Time inside the tools a run calls, and validation runs: one offline (`rules` engine) run per
corpus repository (`*.bundle`, cloned to a temp dir), every child process timed by
`tool_timer.timing_children`. Repo Pilot's own share is the run's wall time during which none of
its children ran (handlers, store, bus, waiting between steps)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import asyncpg

from benchmarks.pipeline_bench import bench_settings, timing, wait_ended
from benchmarks.tool_timer import timing_children
from shared.app.runtime import PIPELINE_SERVICES, System
from shared.engines.rules.validate import SUITE_RUNS
from shared.events import PipelineRequested, make_event, new_run_stream

CORPUS = Path(os.environ.get("REPO_PILOT_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))


def corpus_bundles(full: bool) -> list[Path]:
    """Every bundle with --full; else the smallest one (quick)."""
    bundles = sorted(CORPUS.glob("*.bundle"), key=lambda p: p.stat().st_size) if CORPUS.is_dir() else []
    return bundles if full else bundles[:1]


def tools_home() -> str:
    """The codemod tools env shared with the test suite (installed once per machine), so its
    first-use install (~90 s) is not part of a benchmark run."""
    import platformdirs

    return os.environ.get("REPO_PILOT_TOOLS_HOME") or str(
        Path(platformdirs.user_cache_dir("repo-pilot-tests")) / "tools")


async def corpus_runs(nats_url: str, database_url: str, tag: str, tmp: Path, bundles: list[Path]) -> list[dict]:
    settings = bench_settings(nats_url, database_url, f"bench_tools_{tag}", tmp / "home-tools", "",
                              OPENAI_BASE_URL=None, OPENAI_API_KEY=None,
                              REPO_PILOT_TOOLS_HOME=tools_home())
    conn = await asyncpg.connect(database_url)
    out = []
    try:
        with timing_children() as timer:
            async with System(settings, services=list(PIPELINE_SERVICES)) as system:
                for bundle in bundles:
                    repo = tmp / bundle.stem
                    subprocess.run(["git", "clone", "-q", str(bundle), str(repo)], check=True)
                    stream = new_run_stream()
                    request = PipelineRequested(repo=str(repo), engine="rules")
                    await system.store.append(stream, [make_event(request, stream)], 0)
                    await wait_ended(conn, settings.db_schema, [stream], timeout=3600)
                    t = await timing(conn, settings.db_schema, stream)
                    row = await conn.fetchrow(f'SELECT min(recorded_at) AS a, max(recorded_at) AS b FROM '
                                              f'"{settings.db_schema}".events WHERE stream_id = $1', stream)
                    # the timer's clock is perf_counter: place the run by its length, ending now
                    end = time.perf_counter()
                    start = end - (row["b"] - row["a"]).total_seconds()
                    tools = timer.by_tool(start, end)
                    # the engine's own count of own-suite runs for this run's base (validate.py)
                    base = await conn.fetchval(f'SELECT data->>\'base_sha\' FROM "{settings.db_schema}".events '
                                               "WHERE stream_id = $1 AND type = 'RepoAnalyzed'", stream)
                    validations = await conn.fetch(
                        f'SELECT type, count(*) AS n FROM "{settings.db_schema}".events WHERE stream_id = $1 '
                        "AND type IN ('ChangeApplied', 'ChangeRejected') GROUP BY type", stream)
                    out.append({"repo": bundle.stem, "status": t.status, "seconds": t.seconds,
                                "busy": timer.busy(start, end), "tools": tools,
                                "pytest_runs": timer.count(start, end, "pytest"),
                                "suite_runs": SUITE_RUNS.get(base or "", 0),
                                "changes": {r["type"]: r["n"] for r in validations}})
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE')
        await conn.close()
    return out
