"""Running the generator over a whole CooperBench-style dataset folder (`generate --dataset`).

Every task folder under the dataset, the folder itself included (one holding
`feature<N>/feature.patch`), gets `attempts` attempts, at most `concurrency` tasks at a time. The
attempts run in this process, through `attempt.run_attempt` (the same three steps the generator
service runs), not as jobs in the event store: the output folder is the batch's checkpoint. An
attempt whose `result.json` exists and reads is done, so a second run over the same output resumes
where the first stopped. A task that cannot run (no repository, unreadable task) stops at its
first StepError, which its row records.

summary.json holds one row per task (attempts, valid attempts, the best attempt's conflicts, cost,
time, attempts resumed, error, repository used); summary.md the same without the last three, an
error shown in place of the valid count.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from shared.adapters.task_dir import load_task
from shared.engines.generator.attempt import GenerateOptions, run_attempt
from shared.policy.generation.task import Task
from shared.ports.errors import StepError


def find_tasks(dataset: Path) -> list[Path]:
    """Task folders under `dataset` (itself included), in path order (pure but for the listing)."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise StepError(f"dataset folder not found: {dataset}")
    found = {p.parent.parent for p in dataset.rglob("feature.patch")
             if p.parent.name.startswith("feature") and p.parent.name[7:].isdigit()}
    if not found:
        raise StepError(f"{dataset} holds no task: no <task>/feature<N>/feature.patch inside",
                        hint="point --dataset at a CooperBench dataset folder")
    return sorted(found)


@dataclass
class TaskRow:
    task: str
    attempts: int = 0
    valid: int = 0
    conflicts: list[int] = field(default_factory=list)  # the features the best attempt conflicts with
    cost_usd: float | None = 0.0  # None: an attempt's model had no price, so the total is unknown
    time_s: float = 0.0
    resumed: int = 0  # attempts read back from an earlier run
    error: str = ""
    repository: str = ""  # where the task's base repository came from


def summarize(task: str, results: list[dict[str, Any]], resumed: int) -> TaskRow:
    """A task's row from its attempts' result.json contents (pure)."""
    row = TaskRow(task, attempts=len(results), resumed=resumed)
    best: list[int] = []
    for r in sorted(results, key=lambda r: not r.get("valid")):
        validation = r.get("validation") or {}
        if not best:
            best = list(validation.get("conflicting_features") or [])
        row.valid += bool(r.get("valid"))
        cost = r.get("cost_usd", 0.0)
        row.cost_usd = None if cost is None or row.cost_usd is None else row.cost_usd + float(cost)
        row.time_s += float(r.get("duration_s") or 0.0)
    row.conflicts = best
    row.cost_usd, row.time_s = None if row.cost_usd is None else round(row.cost_usd, 6), round(row.time_s, 3)
    return row


def cost_text(cost: float | None) -> str:
    """A cost for a table: 'unpriced' when the model has no price, never 0 (pure)."""
    return "unpriced" if cost is None else f"{cost:.4f}"


def markdown(rows: list[TaskRow]) -> str:
    """The summary as a Markdown table (pure)."""
    lines = ["| task | attempts | valid | conflicts | cost $ | time s |", "|---|---|---|---|---|---|"]
    for r in rows:
        conflicts = ", ".join(map(str, r.conflicts)) or "-"
        valid = f"error: {r.error}" if r.error else str(r.valid)
        lines.append(f"| {r.task} | {r.attempts} | {valid} | {conflicts} | {cost_text(r.cost_usd)} | {r.time_s:.1f} |")
    return "\n".join(lines) + "\n"


def task_repository(task: Task, repo_path: Path | str | None) -> tuple[str | None, str]:
    """(the `repo_path` option for this task, what to tell the user) (pure but for the listing).

    `repo_path` is one repository every task uses, or a folder of mirrors holding one per
    repository, named after the last part of setup.sh's URL (`calc` or `calc.git`). Without it,
    setup.sh's URL is cloned. Raises StepError when the folder holds no mirror for the task."""
    if repo_path is None:
        return None, f"clone of {task.repo_url} (setup.sh)" if task.repo_url else "no repository named"
    folder = Path(repo_path).expanduser().resolve()
    if not folder.is_dir():
        raise StepError(f"--repo-path {folder} is not a directory")
    if (folder / ".git").exists() or (folder / "HEAD").is_file():
        return str(folder), f"{folder} (--repo-path)"
    name = (task.repo_url or "").rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    for candidate in (folder / name, folder / f"{name}.git") if name else ():
        if candidate.is_dir():
            return str(candidate), f"{candidate} (mirror in --repo-path for {task.repo_url})"
    raise StepError(f"--repo-path {folder} is neither a git repository nor a folder holding a mirror of "
                    f"{task.repo_url or 'the task repository'} (looked for {name or '?'} and {name or '?'}.git)")


async def _run_task(task_dir: Path, key: str, options: GenerateOptions, folder: Path, attempts: int,
                    client: Any, on_attempt: Callable[[str, int, dict], None],
                    on_repository: Callable[[str, str], None]) -> TaskRow:
    results, resumed, where = [], 0, ""
    try:
        task = None
        for n in range(1, attempts + 1):
            written = folder / f"attempt_{n}" / "result.json"
            if written.is_file():
                try:
                    results.append(json.loads(written.read_text()))
                    resumed += 1
                    continue
                except ValueError:
                    pass  # a result cut short by the interruption: run the attempt again
            if task is None:
                task = load_task(task_dir)
                source, where = task_repository(task, options.repo_path)
                on_repository(key, where)
                options = replace(options, repo_path=source)
            started = time.monotonic()
            result = await run_attempt(task, options, folder / f"attempt_{n}", n, client)
            data = result.result | {"duration_s": round(time.monotonic() - started, 3)}
            results.append(data)
            on_attempt(key, n, data)
    except StepError as exc:
        row = summarize(key, results, resumed)
        row.error, row.repository = exc.message, where
        return row
    row = summarize(key, results, resumed)
    row.repository = where
    return row


async def run_dataset(dataset: Path, options: GenerateOptions, output: Path, attempts: int = 1,
                      concurrency: int = 2, client: Any = None,
                      on_attempt: Callable[[str, int, dict], None] = lambda *_: None,
                      on_repository: Callable[[str, str], None] = lambda *_: None) -> list[TaskRow]:
    """Every task of `dataset`, `concurrency` at a time; writes output/summary.json and summary.md."""
    tasks = find_tasks(dataset)
    gate = asyncio.Semaphore(max(1, concurrency))
    root = Path(dataset).resolve()

    async def one(task_dir: Path) -> TaskRow:
        key = str(task_dir.resolve().relative_to(root)) if task_dir.resolve() != root else task_dir.name
        async with gate:
            return await _run_task(task_dir, key, options, output / key, attempts, client, on_attempt,
                                   on_repository)

    rows = list(await asyncio.gather(*(one(t) for t in tasks)))
    output.mkdir(parents=True, exist_ok=True)
    (output / "summary.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    (output / "summary.md").write_text(markdown(rows))
    return rows
