"""One row per measured figure, beside its baseline from the same run; printed as a table and kept
as JSON in benchmarks/results/ so a later run can be compared with this one."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"


@dataclass
class Row:
    """`ours` against `baseline` (same unit). `aim` is a bound on ours/baseline (`lower`: ratio must be
    at most aim; else at least aim), or on `ours` itself when `absolute` (e.g. 10 ms, 1 GB)."""

    section: str
    measure: str
    ours: float | None
    baseline: float | None = None
    unit: str = ""
    aim: float | None = None
    lower: bool = True
    absolute: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline

    @property
    def met(self) -> bool | None:
        if self.aim is None:
            return None
        value = self.ours if self.absolute else self.ratio
        if value is None:
            return None
        return value <= self.aim if self.lower else value >= self.aim

    def aim_text(self) -> str:
        if self.aim is None:
            return "—"
        bound = f"{'≤' if self.lower else '≥'} {self.aim:g}{' ' + self.unit if self.absolute else '×'}"
        return f"{bound} {'met' if self.met else 'MISSED' if self.met is False else '?'}"


@dataclass
class Report:
    mode: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def table(self) -> Table:
        table = Table(title=f"Repo Pilot benchmarks ({self.mode}); ratios are ours / baseline from the same run")
        for col in ("section", "measure", "ours", "baseline", "ratio", "aim"):
            table.add_column(col, justify="right" if col in ("ours", "baseline", "ratio") else "left")
        for r in self.rows:
            aim = r.aim_text()
            style = "green" if r.met else "red" if r.met is False else None
            table.add_row(r.section, r.measure, _fmt(r.ours, r.unit), _fmt(r.baseline, r.unit),
                          f"{r.ratio:.2f}×" if r.ratio is not None else "—",
                          f"[{style}]{aim}[/]" if style else aim)
        return table

    def print(self, console: Console) -> None:
        console.print(self.table())
        for row in self.rows:
            if row.note:
                console.print(f"• {row.section} / {row.measure}: {row.note}")
        for text in self.notes:
            console.print(f"• {text}")

    def save(self) -> Path:
        RESULTS.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started))
        path = RESULTS / f"{stamp}-{self.mode}.json"
        body = {
            "mode": self.mode,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "machine": {"python": platform.python_version(), "cpus": _cpus(), "commit": _commit()},
            "rows": [{**asdict(r), "ratio": r.ratio, "met": r.met} for r in self.rows],
            "notes": self.notes,
        }
        path.write_text(json.dumps(body, indent=1) + "\n")
        return path


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()
