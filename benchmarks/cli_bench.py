"""Command latency: `repo-pilot runs` and `repo-pilot status RUN` against a running installation
(servers up, a schema with runs projected), time from starting the process to its first byte of
output, against `psql` running the same query (`SELECT * FROM runs …` / the run and its beads).
Also the biggest imports of `python -X importtime -m shared.app.cli status RUN` (the measured command
itself, not `--help`, which loads the generator and the openai SDK that `status` leaves out), to say
where start-up goes."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from benchmarks.servers import installed_python
from shared.events import PipelineRequested, StepCompleted, StepStarted, make_event, new_run_stream
from shared.store import PostgresEventStore
from shared.store.projections import Projector

CLI = [sys.executable, "-m", "shared.app.cli"]


def first_output(cmd: list[str], env: dict) -> float:
    """Seconds from start to the first byte on stdout (the process then runs to its end)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    seconds = time.perf_counter() - started
    proc.stdout.read()
    if proc.wait() != 0 or not first:
        raise RuntimeError(f"{' '.join(cmd[:5])} exited {proc.returncode} without output")
    return seconds


async def _installation(database_url: str, schema: str, runs: int) -> str:
    store = await PostgresEventStore.connect(database_url, schema=schema)
    try:
        run_id = ""
        for _ in range(runs):
            run_id = new_run_stream()
            events = [make_event(PipelineRequested(repo="/srv/repo"), run_id)]
            for step in ("analyze", "suggest", "execute"):
                events += [make_event(StepStarted(step=step, attempt=1), run_id),
                           make_event(StepCompleted(step=step, summary="ok"), run_id)]
            await store.append(run_id, events, 0)
        await Projector(store).run_once()
        return run_id
    finally:
        await store.close()


def top_imports(env: dict, args: list[str], n: int = 5) -> list[tuple[str, float]]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "shared.app.cli", *args],
                          capture_output=True, text=True, env=env, check=False)
    cumulative: dict[str, float] = {}
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) <= 2:  # top-level imports of the CLI module only
            cumulative[m.group(3)] = int(m.group(1)) / 1e6
    return sorted(cumulative.items(), key=lambda kv: -kv[1])[:n]


async def cli_benchmark(nats_url: str, database_url: str, tag: str, tmp: Path, rounds: int) -> dict:
    schema = f"bench_cli_{tag}"
    run_id = await _installation(database_url, schema, runs=30)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REPO_PILOT_"))}
    env.update(NATS_URL=nats_url, DATABASE_URL=database_url, REPO_PILOT_DB_SCHEMA=schema,
               REPO_PILOT_HOME=str(tmp / "cli-home"), COLUMNS="160", PYTHONPATH=str(Path(__file__).parent.parent))
    env = installed_python(env, tmp / "pycache")
    psql = shutil.which("psql")
    queries = {
        "runs": (["runs"], f'SELECT * FROM "{schema}".runs ORDER BY started_at DESC LIMIT 20'),
        "status": (["status", run_id], f"SELECT * FROM \"{schema}\".runs WHERE run_id = '{run_id}'; "
                   f"SELECT * FROM \"{schema}\".beads WHERE run_id = '{run_id}' ORDER BY seq, bead_id"),
    }
    out: dict = {"psql": psql is not None}
    try:
        for name, (args, sql) in queries.items():
            first_output([*CLI, *args], env)  # untimed: bytecode written, as after an installation's first use
            ours, base = [], []
            for _ in range(rounds):
                ours.append(first_output([*CLI, *args], env))
                if psql:
                    base.append(first_output([psql, database_url, "-X", "-q", "-c", sql], env))
            out[name] = (statistics.median(ours), statistics.median(base) if base else None)
        out["imports"] = top_imports(env, queries["status"][0])
        return out
    finally:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
