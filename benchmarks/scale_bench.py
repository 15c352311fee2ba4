"""Scale-out: runs per minute with 1, 2 (and 4) replicas of every pipeline service, each replica a
separate `repo-pilot up --services …` process (its services join the same durable consumers; one
relay leads, the others stand by), every model answer delayed by the scripted server. `runs` runs
on fresh copies of the `calc` fixture are requested at once; throughput = runs / (last run's end -
first request). Each configuration has its own schema and stream.

What limits it is read off the same measurement: the replicas' CPU (user + system of the processes
and every child they waited for: git, pytest, pip, from wait4) against the wall time (how many
cores they kept busy; the machine has `os.cpu_count()`, shared with other work), and the step
boundary (event appended → next handler starts), which grows when events queue for a consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from benchmarks.pipeline_bench import bench_settings, percentile, request_for, scripted_server, timing, wait_ended
from shared.app.runtime import PIPELINE_SERVICES
from shared.events import make_event, new_run_stream
from shared.store import PostgresEventStore
from tests.support.llm_script import make_calc_repo

ROOT = Path(__file__).resolve().parent.parent


def _env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "REPO_PILOT_", "OPENAI_"))}
    env.update({
        "NATS_URL": settings.nats_url, "DATABASE_URL": settings.database_url,
        "REPO_PILOT_DB_SCHEMA": settings.db_schema, "REPO_PILOT_STREAM": settings.stream_name,
        "REPO_PILOT_SUBJECT_PREFIX": settings.subject_prefix, "REPO_PILOT_HOME": str(settings.home),
        "OPENAI_BASE_URL": settings.openai_base_url or "", "OPENAI_API_KEY": "bench",
        "OPENAI_MODEL": settings.openai_model, "REPO_PILOT_LLM_CONCURRENCY": "8",
    })  # fmt: skip
    return env


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "shared.app.cli", "up", "--services",
                                 ",".join(PIPELINE_SERVICES)], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


async def _ready(proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while "up: NATS" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"replica did not start: {log.read_text(errors='replace')[-2000:]}")
        await asyncio.sleep(0.2)


def _stop(proc: subprocess.Popen) -> float:
    """SIGTERM, wait (SIGKILL after 30 s); the CPU seconds it and its waited-for children used."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.1)


async def one_config(nats_url: str, database_url: str, name: str, tmp: Path, model_url: str,
                     replicas: int, runs: int) -> dict:
    settings = bench_settings(nats_url, database_url, name, tmp / f"home-{name}", model_url)
    env = _env(settings)
    store = await PostgresEventStore.connect(database_url, schema=settings.db_schema)  # migrates the schema
    conn = await asyncpg.connect(database_url)
    procs: list[subprocess.Popen] = []
    cpu = 0.0
    try:
        for i in range(replicas):
            log = tmp / f"{name}-{i}.log"
            procs.append(_start(env, log))
            await _ready(procs[-1], log)
        repos = [make_calc_repo(tmp / f"{name}-calc-{i}") for i in range(runs)]
        started = time.perf_counter()
        streams = []
        for repo in repos:
            stream = new_run_stream()
            await store.append(stream, [make_event(request_for(repo), stream)], 0)
            streams.append(stream)
        await wait_ended(conn, settings.db_schema, streams, timeout=3600)
        wall = time.perf_counter() - started
        timings = [await timing(conn, settings.db_schema, s) for s in streams]
    finally:
        for proc in procs:
            cpu += await asyncio.to_thread(_stop, proc)
        await store.close()
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE')
        await conn.close()
    boundaries = [b for t in timings for b in t.boundaries]
    return {"replicas": replicas, "runs": runs, "wall": wall, "per_minute": runs / wall * 60,
            "completed": sum(t.status == "completed" for t in timings),
            "run_p50": statistics.median(t.seconds for t in timings),
            "boundary_p50": statistics.median(boundaries) if boundaries else float("nan"),
            "boundary_p95": percentile(boundaries, 0.95), "cpu_cores": cpu / wall,
            # share of the runs' time spent between an event's append and its handler's start
            "queued": sum(boundaries) / sum(t.seconds for t in timings)}


async def scale_benchmark(nats_url: str, database_url: str, tag: str, tmp: Path, delay: float,
                          replica_counts: tuple[int, ...], runs: int, concurrent: int) -> list[dict]:
    """One measurement per replica count with `runs` runs, then `concurrent` runs at once on the
    largest replica count."""
    out = []
    with scripted_server(delay) as model:
        for replicas in replica_counts:
            out.append(await one_config(nats_url, database_url, f"bench_scale{replicas}_{tag}", tmp,
                                        model.base_url, replicas, runs))
        if concurrent:
            top = max(replica_counts)
            out.append(await one_config(nats_url, database_url, f"bench_conc_{tag}", tmp, model.base_url,
                                        top, concurrent))
    return out


def rows(results: list[dict], delay: float) -> list:
    from benchmarks.report import Row

    base = results[0]
    out = []
    for r in results:
        label = (f"{r['runs']} concurrent runs, {r['replicas']} replica(s)" if r is results[-1] and len(results) > 1
                 and r["runs"] != base["runs"] else f"{r['replicas']} replica(s) of each service, {r['runs']} runs")
        out.append(Row("scale-out", f"runs/min, {label}", r["per_minute"], base["per_minute"], "runs/min",
                       note=f"{r['completed']}/{r['runs']} completed; run p50 {r['run_p50']:.1f} s; step boundary "
                            f"p50 {r['boundary_p50'] * 1e3:.0f} ms / p95 {r['boundary_p95'] * 1e3:.0f} ms (boundaries sum to {r['queued']:.0%} of "
                            f"run time waiting for a consumer); replicas "
                            f"kept {r['cpu_cores']:.2f} of {os.cpu_count()} cores busy; model delay {delay:g} s"))
    return out
