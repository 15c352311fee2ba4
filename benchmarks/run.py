"""`python -m benchmarks [--quick | --full] [--only SECTION,…]`: measure, side by side in one run,
print a table with each figure beside its baseline and each aim met or missed, and keep the
figures as JSON in benchmarks/results/ (see benchmarks/README.md for what each one means).

Uses NATS_URL / DATABASE_URL when set, else embedded servers in a temp home (stopped at the end).
`--quick` (the default) keeps every section short on 2 shared cores; `--full` runs the big sizes
(a million-event relay log, every corpus repository, more runs).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console

from benchmarks import latency_bench
from benchmarks.report import Report, Row
from benchmarks.servers import bench_servers, psycopg_params
from benchmarks.store_bench import run_store_benchmarks

console = Console(width=160)
SECTIONS = ("store", "latency", "pipeline", "relay", "scan", "cli", "tools", "scale")
QUICK = {"one_per_tx": 2000, "batched": 20000, "latency": 200, "runs": 2, "delayed_runs": 1,
         "relay": 20_000, "cli_rounds": 3, "replicas": (1, 2), "scale_runs": 4, "concurrent": 8}
FULL = {"one_per_tx": 4000, "batched": 40000, "latency": 400, "runs": 5, "delayed_runs": 3,
        "relay": 1_000_000, "cli_rounds": 5, "replicas": (1, 2, 4), "scale_runs": 8, "concurrent": 100}
MODEL_DELAY = 0.5


def store_rows(servers, tag: str, size: dict) -> list[Row]:
    measures = asyncio.run(run_store_benchmarks(servers.database_url, psycopg_params(servers.database_url), tag,
                                                size["one_per_tx"], size["batched"]))
    return [Row("store", m.name, m.ours, m.baseline, "ev/s", aim=m.aim, lower=False, note=m.note) for m in measures]


def latency_rows(servers, tag: str, size: dict) -> list[Row]:
    async def both():
        raw = await latency_bench.raw(servers.nats_url, servers.database_url, tag, size["latency"], warmup=20)
        ours = await latency_bench.ours(servers.nats_url, servers.database_url, tag, size["latency"], warmup=20)
        return latency_bench.summary(ours), latency_bench.summary(raw)

    ours, raw = asyncio.run(both())
    return [Row("latency", f"append → handler {q}, idle system", ours[q] * 1e3, raw[q] * 1e3, "ms",
                aim=3.0 if q == "p50" else None,
                note="baseline: raw nats-py publish → push subscriber → one INSERT" if q == "p50" else "")
            for q in ("p50", "p99")]


def pipeline_rows(servers, tag: str, size: dict, tmp: Path, report: Report) -> list[Row]:
    from benchmarks import pipeline_bench

    results = asyncio.run(pipeline_bench.pipeline_benchmarks(
        servers.nats_url, servers.database_url, tag, tmp, size["runs"], MODEL_DELAY, size["delayed_runs"]))
    rows, notes = pipeline_bench.rows(results, MODEL_DELAY)
    for text in notes:
        report.note(text)
    return rows


def relay_rows(servers, tag: str, size: dict) -> list[Row]:
    from benchmarks.relay_bench import relay_benchmark

    ours, raw = asyncio.run(relay_benchmark(servers.nats_url, servers.database_url, tag, size["relay"]))
    return [Row("relay", f"log → JetStream, {size['relay']:,} events", ours, raw, "ev/s", aim=0.8, lower=False,
                note="baseline: the same events read in pages and sent with nats-py publish_async, all acks awaited")]


def scan_rows(tmp: Path) -> list[Row]:
    from benchmarks.scan_bench import scan_benchmark

    r = scan_benchmark(tmp)
    mb = r["bytes"] / 1e6
    return [
        Row("scan", f"seconds, {r['files']:,} files / {mb:,.0f} MB (stdlib + 7 MB .py + 60 MB binary)",
            r["ours_s"], r["floor_s"], "s", aim=2.0,
            note="ours: facts.collect + scan_repo in a child, start-up and imports included; "
                 "baseline: git ls-files + read every file (imports nearly nothing)"),
        Row("scan", "seconds in-process, first read (after imports)", r["ours_first_s"], r["floor_first_s"], "s",
            aim=2.0),
        Row("scan", "seconds in-process, read again (a running analyzer)", r["ours_again_s"], r["floor_again_s"],
            "s", aim=2.0),
        Row("scan", "files/s (read again)", r["files"] / r["ours_again_s"], r["files"] / r["floor_again_s"],
            "files/s"),
        Row("scan", "bytes/s (read again)", mb / r["ours_again_s"], mb / r["floor_again_s"], "MB/s"),
        Row("scan", "peak memory", r["ours_mb"], r["floor_mb"], "MB", aim=1024, absolute=True),
        Row("scan", "rules analysis (every module parsed), seconds", r["rules_s"], r["floor_s"], "s",
            note="collect + analyze_facts in a child, first time; includes the child's start-up"),
        Row("scan", "rules analysis again, same process (sources unchanged)", r["rules_again_s"], r["floor_s"], "s"),
        Row("scan", "rules analysis peak memory", r["rules_mb"], r["floor_mb"], "MB", aim=1024, absolute=True),
    ]


def scale_rows(servers, tag: str, size: dict, tmp: Path) -> list[Row]:
    from benchmarks import scale_bench

    results = asyncio.run(scale_bench.scale_benchmark(servers.nats_url, servers.database_url, tag, tmp, MODEL_DELAY,
                                                      size["replicas"], size["scale_runs"], size["concurrent"]))
    return scale_bench.rows(results, MODEL_DELAY)


def cli_rows(servers, tag: str, size: dict, tmp: Path, report: Report) -> list[Row]:
    from benchmarks.cli_bench import cli_benchmark

    r = asyncio.run(cli_benchmark(servers.nats_url, servers.database_url, tag, tmp, size["cli_rounds"]))
    report.note("`repo-pilot status` start-up, biggest top-level imports (python -X importtime): "
                + ", ".join(f"{name} {s:.2f} s" for name, s in r["imports"]))
    return [Row("commands", f"`repo-pilot {name}` time to first output", r[name][0], r[name][1], "s",
                aim=1.0, absolute=True, note="baseline: psql running the same query" if name == "runs" else "")
            for name in ("runs", "status")]


def tools_rows(servers, tag: str, full: bool, tmp: Path, report: Report) -> list[Row]:
    from benchmarks.tools_bench import corpus_bundles, corpus_runs

    bundles = corpus_bundles(full)
    if not bundles:
        report.note("tools: no corpus (*.bundle) found; set REPO_PILOT_CORPUS")
        return []
    rows = []
    for r in asyncio.run(corpus_runs(servers.nats_url, servers.database_url, tag, tmp, bundles)):
        own = r["seconds"] - r["busy"]
        split = ", ".join(f"{tool} {s:.1f} s" for tool, s in r["tools"].items() if s >= 0.05)
        rows.append(Row("tools", f"{r['repo']} ({r['status']}): Repo Pilot's own share of {r['seconds']:.0f} s",
                        100 * own / r["seconds"], None, "%", aim=10, absolute=True,
                        note=f"inside children: {split}"))
        rows.append(Row("validation", f"{r['repo']}: own-suite runs by the engine's validation (its count)",
                        r["suite_runs"], None, "runs",
                        note=f"base run included; {r['changes'].get('ChangeApplied', 0)} change(s) applied, "
                             f"{r['changes'].get('ChangeRejected', 0)} rejected in the run"))
        rows.append(Row("validation", f"{r['repo']}: pytest processes (validation, tester, generated) and their time",
                        r["pytest_runs"], None, "runs", note=f"{r['tools'].get('pytest', 0):.1f} s inside pytest"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size_arg = parser.add_mutually_exclusive_group()
    size_arg.add_argument("--quick", action="store_true", help="small sizes, a few minutes per section (default)")
    size_arg.add_argument("--full", action="store_true", help="the big sizes: 1M-event relay log, whole corpus")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all): {', '.join(SECTIONS)}")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    logging.basicConfig(level=logging.ERROR)
    size = FULL if args.full else QUICK
    report = Report("full" if args.full else "quick")
    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="repo-pilot-bench-"))
    started = time.perf_counter()
    try:
        with bench_servers() as servers:
            console.print(f"[bold]benchmarks ({report.mode})[/] on "
                          f"{'embedded servers' if servers.embedded else 'NATS_URL / DATABASE_URL'}: {', '.join(only)}")
            steps = {
                "store": lambda: store_rows(servers, tag, size),
                "latency": lambda: latency_rows(servers, tag, size),
                "pipeline": lambda: pipeline_rows(servers, tag, size, tmp, report),
                "relay": lambda: relay_rows(servers, tag, size),
                "scan": lambda: scan_rows(tmp),
                "cli": lambda: cli_rows(servers, tag, size, tmp, report),
                "tools": lambda: tools_rows(servers, tag, args.full, tmp, report),
                "scale": lambda: scale_rows(servers, tag, size, tmp),
            }
            for section in only:
                began = time.perf_counter()
                try:
                    report.add(*steps[section]())
                except Exception as exc:  # one broken section must not lose the others' figures
                    report.note(f"{section}: FAILED: {type(exc).__name__}: {exc}")
                console.print(f"  {section}: {time.perf_counter() - began:.0f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.print(console)
    console.print(f"written {report.save()}; took {time.perf_counter() - started:.0f} s")
