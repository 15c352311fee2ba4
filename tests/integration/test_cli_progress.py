"""`repo-pilot run` with stdout/stderr not a terminal (a file, a pipe, a CI log): one plain line per
bead change, written as it happens, not a live table drawn only at the end."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration


def _line_with(stream, text: str) -> tuple[str, list[str]]:
    """Read lines until one contains `text` (the process still runs); returns it and what came before."""
    before = []
    for line in stream:
        if text in line:
            return line, before
        before.append(line)
    raise AssertionError(f"{text!r} never came; the output was:\n{''.join(before)}")


async def _append(database_url: str, schema: str, run_id: str, *payloads) -> None:
    from shared.events import make_event
    from shared.store.projections import Projector

    from shared.store import PostgresEventStore

    store = await PostgresEventStore.connect(database_url, schema=schema)  # cli_env drops the schema
    try:
        if run_id:
            version = len(await store.read_stream(run_id))
            await store.append(run_id, [make_event(p, run_id, service="test") for p in payloads], version)
        await Projector(store).run_once()
    finally:
        await store.close()


def test_progress_lines_arrive_while_the_run_goes_on_when_piped(cli_env, tmp_path, database_url, db_schema):
    """The run is followed from a cluster that the test plays (no services in the process): each
    event the test appends shows up as a line on the pipe while `run` is still waiting, so the
    lines are written when the change happens, not buffered until the end."""
    from shared.events import PipelineFailed, StepCompleted, StepStarted

    repo = make_git_repo(tmp_path / "target", {"app.py": "print('hi')\n"})
    asyncio.run(_append(database_url, db_schema, ""))  # the cluster's projector made its tables
    env = {k: v for k, v in cli_env.items() if k != "COLUMNS"}  # a pipe's width, as in a CI log
    proc = subprocess.Popen([sys.executable, "-m", "shared.app.cli", "run", str(repo), "--no-local"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said, _ = _line_with(proc.stderr, "run run-")
        assert said.rstrip().endswith("with the rules engine"), said  # one message, one line (not wrapped at 80)
        run_id = said.split()[1]
        asyncio.run(_append(database_url, db_schema, run_id, StepStarted(step="analyze")))
        line, before = _line_with(proc.stderr, "analyze (rules engine): RUNNING")
        assert proc.poll() is None  # the run has not ended: the line came as it happened
        assert any(f"run {run_id}: RUNNING" in b for b in before)
        assert "─" not in "".join(before) + line  # no table drawing in a log

        asyncio.run(_append(database_url, db_schema, run_id,
                            StepCompleted(step="analyze", summary="3 files, 12 lines"), StepStarted(step="suggest")))
        done, _ = _line_with(proc.stderr, "analyze (rules engine): COMPLETED")
        assert "s — 3 files, 12 lines" in done  # its duration and its summary
        _line_with(proc.stderr, "suggest: RUNNING")
        assert proc.poll() is None

        asyncio.run(_append(database_url, db_schema, run_id, PipelineFailed(step="suggest", error="gave up")))
        _, ending = _line_with(proc.stderr, f"run {run_id}: FAILED")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert any("suggest: FAILED" in line for line in ending)  # the bead the failure ended, then the run
    assert "failed: suggest: gave up" in out  # then the verdict, on stdout
