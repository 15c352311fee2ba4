"""`python -m benchmarks`: measure, side by side in one run, and print a table with ratios and aims.

Uses NATS_URL / DATABASE_URL when set, else embedded servers in a temp home (stopped at the end).
Sizes are small enough for ~1 minute on 2 shared cores; `--scale 2` doubles them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid

from rich.console import Console
from rich.table import Table

from benchmarks import latency_bench
from benchmarks.servers import bench_servers, psycopg_params
from benchmarks.store_bench import Measure, run_store_benchmarks

console = Console()


def _ratio_cell(m: Measure, higher_is_better: bool = True) -> tuple[str, str]:
    ratio = m.ours / m.baseline if m.baseline else float("inf")
    if m.aim is None:
        return f"{ratio:.2f}×", "—"
    met = ratio >= m.aim if higher_is_better else ratio <= m.aim
    aim = f"{'≥' if higher_is_better else '≤'} {m.aim:g}×"
    return f"{ratio:.2f}×", f"{aim} [{'green]met' if met else 'red]MISSED'}[/]"


def render(store_measures: list[Measure], ours_lat: dict, raw_lat: dict, n_lat: int) -> None:
    table = Table(title="Repo Pilot vs baselines (same servers, same run)")
    for col in ("measure", "ours", "baseline", "ours / baseline", "aim"):
        table.add_column(col, justify="left" if col in ("measure", "aim") else "right")
    for m in store_measures:
        ratio, aim = _ratio_cell(m)
        table.add_row(m.name, f"{m.ours:,.0f}", f"{m.baseline:,.0f}", ratio, aim)
    for q in ("p50", "p99"):
        m = Measure(
            f"append → handler {q}, {n_lat} events (ms)", ours_lat[q] * 1e3, raw_lat[q] * 1e3,
            aim=3.0 if q == "p50" else None,
        )
        ratio, aim = _ratio_cell(m, higher_is_better=False)
        table.add_row(m.name, f"{m.ours:.2f}", f"{m.baseline:.2f}", ratio, aim)
    console.print(table)
    console.print(
        "baselines: eventsourcing.postgres (PostgresApplicationRecorder: insert_events, "
        "select_notifications) in its own schema; raw nats-py JetStream publish → push subscriber "
        "→ one INSERT."
    )
    for m in store_measures:
        if m.note:
            console.print(f"{m.name}: {m.note}")


async def _latencies(nats_url: str, database_url: str, tag: str, n: int) -> tuple[dict, dict]:
    raw = await latency_bench.raw(nats_url, database_url, tag, n, warmup=20)
    ours = await latency_bench.ours(nats_url, database_url, tag, n, warmup=20)
    return latency_bench.summary(ours), latency_bench.summary(raw)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the event counts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("faststream").setLevel(logging.WARNING)
    tag = uuid.uuid4().hex[:8]
    one_per_tx, batched, n_lat = int(2000 * args.scale), int(20000 * args.scale), int(200 * args.scale)
    started = time.perf_counter()
    with bench_servers() as servers:
        where = "embedded servers" if servers.embedded else "NATS_URL / DATABASE_URL"
        console.print(f"[bold]benchmarks[/] on {where}: {servers.nats_url}")
        store_measures = asyncio.run(
            run_store_benchmarks(servers.database_url, psycopg_params(servers.database_url), tag, one_per_tx, batched)
        )
        ours_lat, raw_lat = asyncio.run(_latencies(servers.nats_url, servers.database_url, tag, n_lat))
    render(store_measures, ours_lat, raw_lat, n_lat)
    console.print(f"took {time.perf_counter() - started:.0f} s")
