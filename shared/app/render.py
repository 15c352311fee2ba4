"""Rich views of runs, beads and events for the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import time
from pathlib import Path

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text


STATUS_STYLE = {"PENDING": "dim", "RUNNING": "bold yellow", "COMPLETED": "green", "FAILED": "bold red",
                "SKIPPED": "magenta"}
DONE = ("COMPLETED", "FAILED")


DETAIL_LIMIT = 240  # characters of a bead's detail in the table; `status RUN --full` shows all


def shorten(text: str, limit: int = DETAIL_LIMIT) -> str:
    """`text` on one line, cut at a word boundary with an ellipsis when longer than `limit`."""
    one_line = " ".join(text.split())
    if len(one_line) <= limit:
        return one_line
    cut = textwrap.shorten(one_line, limit, placeholder=" …")
    return cut if cut != "…" and cut.strip() != "…" else one_line[:limit - 1] + "…"  # one word longer than limit


def bead_table(run: dict | None, beads: list[dict], full: bool = False) -> Table:
    """The bead chain; details wrap to the console's width, shortened at a word unless `full`."""
    title = f"{run['run_id']} — {run['status']}" if run else "waiting for the run to appear…"
    table = Table(title=title, title_justify="left", expand=False)
    for col in ("bead", "status", "duration"):
        table.add_column(col, no_wrap=col != "bead")
    table.add_column("detail", overflow="fold")
    for b in beads:
        duration = f"{b['duration_ms'] / 1000:.1f}s" if b["duration_ms"] is not None else ""
        detail = str(b["error"] or (b["metadata"] or {}).get("summary") or "")
        table.add_row(b["title"], Text(b["status"], style=STATUS_STYLE.get(b["status"], "")), duration,
                      Text(detail if full else shorten(detail)))
    return table


def model_activity() -> Text | None:
    """Model requests of this process running and waiting for a slot, per endpoint (None when idle)."""
    from shared.engines.llm_endpoint import activity

    busy = activity()
    if not busy:
        return None
    return Text("\n".join(
        f"model {e.base_url}: {e.running} running, {e.waiting} waiting (at most {e.limit} at once)"
        for e in busy
    ), style="cyan")


def live_view(run: dict | None, beads: list[dict]) -> Table | Group:
    table = bead_table(run, beads)
    waiting = model_activity()
    return table if waiting is None else Group(table, waiting)


def progress_lines(seen: dict[str, tuple], run: dict | None, beads: list[dict]) -> list[str]:
    """Plain lines for what changed since `seen` (updated in place): one per bead whose status
    changed, one when the run's status changed (before its beads' lines when it starts, after them
    when it ends). For a log or a pipe, where a live table is not drawn."""
    lines = []
    for b in beads:
        state = (b["status"], b["duration_ms"])
        if seen.get(b["bead_id"], ("PENDING", None)) == state:
            continue
        seen[b["bead_id"]] = state
        duration = f" {b['duration_ms'] / 1000:.1f}s" if b["duration_ms"] is not None else ""
        detail = b["error"] or (b["metadata"] or {}).get("summary") or ""
        lines.append(f"{b['title']}: {b['status']}{duration}" + (f" — {detail}" if detail else ""))
    if run and seen.get(" run") != run["status"]:  # the start before its beads, the end after them
        seen[" run"] = run["status"]
        lines.insert(len(lines) if run["status"] in DONE else 0, f"run {run['run_id']}: {run['status']}")
    return lines


async def follow(store, run_id: str, timeout: float, console: Console, interval: float = 0.5) -> dict | None:
    """Show the bead chain until the run ends (or `timeout`); returns the final run row.

    On a terminal the table is redrawn live; otherwise (a file, a pipe, a CI log) each change is
    one plain line, written as it happens."""
    from rich.live import Live  # here, not at the top: `runs` and `status` never draw live

    from shared.store.projections import get_run

    deadline = time.monotonic() + timeout
    run, beads = None, []
    seen: dict[str, tuple] = {}
    live = Live(bead_table(None, []), console=console, refresh_per_second=4, transient=False) \
        if console.is_terminal else contextlib.nullcontext()
    with live:
        while time.monotonic() < deadline:
            run, beads = await get_run(store, run_id)
            if console.is_terminal:
                live.update(live_view(run, beads))
            else:
                for line in progress_lines(seen, run, beads):
                    console.print(time.strftime("%H:%M:%S ") + line, markup=False, highlight=False,
                                  soft_wrap=True)
            if run and run["status"] in DONE:
                break
            await asyncio.sleep(interval)
        else:
            console.print(f"[yellow]still running after {timeout:.0f}s; `repo-pilot status {run_id}` shows it later")
    if console.is_terminal:
        console.line()  # the live view leaves its cursor at the end of the table
    return run


def tally(group: dict) -> str:
    """`3/4 passed`, or `timed out after 600s` (a timeout is not "0/0 passed")."""
    if group.get("timed_out"):
        return f"timed out after {group['timed_out']:g}s"
    return f"{group['passed']}/{group['total']} passed"


def print_verdict(console: Console, run: dict | None, beads: list[dict], *, hint: str = "",
                  log_path=None) -> None:
    if run is None:
        console.print("[red]the run never appeared in the read models: is a projector running (`repo-pilot up`)?")
        return
    lines = []
    if run["status"] == "COMPLETED":
        lines.append(Text("merged" if run["merged"] else "completed, not merged",
                          style="bold green" if run["merged"] else "bold yellow"))
    else:
        lines.append(Text(f"{run['status'].lower()}: {run['error'] or ''}", style="bold red"))
        if hint:
            lines.append(Text(f"hint: {hint}", style="yellow"))
    if run["score"] is not None:
        lines.append(Text(f"score {run['score']:.1f} (threshold {run['threshold']}, "
                          f"{'passed' if run['passed'] else 'not passed'})"))
    tests = run.get("tests") or {}
    before, after = tests.get("own_before"), tests.get("own_after")
    if after:
        from shared.policy.review import did_not_run  # only a run with test results needs it

        lines.append(Text(f"own tests: before {suite_summary(before)}, after {suite_summary(after)}"
                          + (" — REGRESSED" if tests.get("regressed") else "")))
        if before and not did_not_run(before) and before["failed"] + before["errors"]:
            lines.append(Text(f"note: the repository's own tests were already failing before the run "
                              f"({before['failed'] + before['errors']} failing)", style="yellow"))
    for g in tests.get("groups", []):
        lines.append(Text(f"generated {g['group']}: {suite_summary(g)}"))
    applied = sum(1 for b in beads if b["kind"] == "improvement" and b["status"] == "COMPLETED")
    rejected = sum(1 for b in beads if b["kind"] == "improvement" and b["status"] == "SKIPPED")
    if applied or rejected:
        lines.append(Text(f"improvements: {applied} applied, {rejected} rejected"))
    if run["branch"]:
        lines.append(Text(f"branch {run['branch']}" + (f" — {run['pr_url']}" if run["pr_url"] else "")))
    if run["error"] and run["status"] == "COMPLETED":
        lines.append(Text(f"why: {run['error']}", style="yellow"))
    if run["tokens"]:
        lines.append(Text(f"model: {run['tokens']} tokens, ${run['cost_usd']:.4f}"))
    console.print(Group(*lines))
    if log_path is not None and Path(log_path).is_file():
        console.print(f"run log: {log_path}")


def suite_summary(group: dict | None) -> str:
    """One test group in words: never "0/0 passed" for a suite that did not run."""
    if not group:
        return "not run"
    if group.get("timed_out"):
        return tally(group)
    from shared.policy.review import did_not_run  # only a run with test results needs it

    if did_not_run(group):
        reason = next((line for line in (group.get("output") or "").splitlines()
                       if line.startswith(("could not run", "pytest exit", "timed out"))), "")
        return f"could not run ({group['errors']} error(s){': ' + reason[:120] if reason else ''})"
    if not group["total"]:
        return "no tests found"
    text = f"{group['passed']}/{group['total']} passed"
    # the rest of the total, said: 323/383 alone read as 60 failing when they were skipped
    bad = [f"{group[k]} {k}" for k in ("failed", "errors", "skipped") if group.get(k)]
    return text + (f" ({', '.join(bad)})" if bad else "")


def print_runs(console: Console, runs: list[dict]) -> None:
    table = Table(title="runs")
    for col in ("run", "status", "repo", "score", "merged", "started"):
        table.add_column(col)
    for r in runs:
        table.add_row(r["run_id"], Text(r["status"], style=STATUS_STYLE.get(r["status"], "")), r["repo"] or "",
                      "" if r["score"] is None else f"{r['score']:.1f}", "" if r["merged"] is None else str(r["merged"]),
                      r["started_at"].strftime("%Y-%m-%d %H:%M:%S") if r["started_at"] else "")
    console.print(table)


def print_run(console: Console, run: dict, beads: list[dict], log_path=None, full: bool = False) -> None:
    console.print(bead_table(run, beads, full))
    print_verdict(console, run, beads, log_path=log_path)


def print_event(console: Console, event, recorded_at=None) -> None:
    """One line: position, the time the store recorded it (UTC; `occurred_at` when not given),
    stream, version, type and the payload's scalar fields."""
    at = recorded_at or event.occurred_at
    console.print(f"[dim]{event.global_position:>6}[/] {at:%H:%M:%S} [cyan]{event.stream_id}[/] "
                  f"v{event.version} [bold]{event.type}[/] {_brief(event)}", highlight=False, soft_wrap=True)


def _brief(event) -> str:
    d = event.data.model_dump(exclude={"schema_version"})
    text = ", ".join(f"{k}={v!r}" for k, v in d.items() if not isinstance(v, (list, dict)) and v not in (None, ""))
    return text[:160]


def print_generation(console: Console, rows: list[tuple[str, dict | None, list[dict]]], output_dir: str) -> None:
    """One line per generation job: its status, validity, cost and why (from the read models)."""
    table = Table(title="generation jobs")
    for col in ("job", "status", "valid", "cost $", "failed step", "reason"):
        table.add_column(col)
    for stream, run, beads in rows:
        if run is None:
            table.add_row(stream, "not seen", "", "", "", "is a projector running (`repo-pilot up`)?")
            continue
        failed = next((b["bead_id"] for b in beads if b["status"] == "FAILED"), "")
        valid = "" if run["passed"] is None else ("yes" if run["passed"] else "no")
        table.add_row(stream, Text(run["status"], style=STATUS_STYLE.get(run["status"], "")), valid,
                      "unpriced" if run["cost_usd"] is None else f"{run['cost_usd']:.4f}", failed, Text(str(run["error"] or "")[:120]))
    console.print(table)
    console.print(f"attempt folders: {output_dir}")
