"""Moving and following the event log through the real CLI on real Postgres: `events --follow` ends
with the run, `events export` / `events import` carry a log to another database unchanged."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from shared.app.eventlog import ImportRefused, parse_lines, plan_import
from shared.events import (
    ChangesReviewed,
    Improvement,
    ImprovementsSuggested,
    LlmCallRecorded,
    MergeCompleted,
    PipelineCompleted,
    PipelineFailed,
    PipelineRequested,
    RepoAnalyzed,
    StepCompleted,
    StepStarted,
    make_event,
    new_run_stream,
)
from shared.store.projections import Projector
from tests.conftest import scratch_store

pytestmark = pytest.mark.integration


def cli(env, *args, check=True, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "shared.app.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"repo-pilot {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


async def _append_run(store, *, merged: bool = True, fail: bool = False) -> str:
    """A run's log as the services write it (one stream, in order)."""
    run = new_run_stream()
    events = [make_event(PipelineRequested(repo="/srv/repo", engine="llm"), run, service="cli")]

    def step(payload):
        events.append(make_event(payload, run, cause=events[-1], service="test"))

    step(StepStarted(step="analyze"))
    step(RepoAnalyzed(base_sha="a" * 40, default_branch="main", repo_path="/srv/repo", specification="s",
                      graph="g", architecture="a", engine="llm"))
    step(LlmCallRecorded(purpose="analyze", model="m", prompt_hash="h1", prompt_tokens=10,
                         completion_tokens=5, cost_usd=0.01, response="{}"))
    step(StepCompleted(step="analyze", summary="3 files"))
    if fail:
        step(PipelineFailed(step="suggest", error="the model kept answering junk"))
    else:
        step(ImprovementsSuggested(improvements=[Improvement(id="s1", category="security", title="t",
                                                             rationale="r")]))
        step(ChangesReviewed(overall=8.5, passed=True, summary="fine", issues=["one nit"]))
        step(MergeCompleted(pushed=True, branch="repo-pilot/x", merged=merged, reason="" if merged else "low"))
        step(PipelineCompleted(verdict="merged" if merged else "not_merged"))
    await store.append(run, events, 0)
    return run


async def _read_models(store):
    await Projector(store).rebuild()
    runs = [dict(r) for r in await store.pool.fetch("SELECT * FROM runs ORDER BY run_id")]
    for r in runs:
        r.pop("last_position")  # a position in that log: the importing log numbers its own
    beads = [dict(b) for b in await store.pool.fetch("SELECT * FROM beads ORDER BY run_id, bead_id")]
    return runs, beads


def test_follow_of_a_run_ends_with_the_run_and_says_how(cli_env):
    done = asyncio.run(_with_store(cli_env, _append_run))
    proc = cli(cli_env, "events", done, "--follow", "--json", timeout=60)
    assert [json.loads(line)["type"] for line in proc.stdout.splitlines()][-1] == "PipelineCompleted"
    assert f"run {done} completed: merged" in proc.stderr

    failed = asyncio.run(_with_store(cli_env, lambda s: _append_run(s, fail=True)))
    proc = cli(cli_env, "events", failed, "--follow", check=False, timeout=60)
    assert proc.returncode == 1
    assert "failed at suggest: the model kept answering junk" in proc.stderr

    unknown = cli(cli_env, "events", "run-nosuchrun", "--follow", check=False, timeout=60)
    assert unknown.returncode == 1 and "no run 'run-nosuchrun'" in unknown.stderr


def test_follow_waits_for_a_run_still_going(cli_env):
    async def scenario():
        run = new_run_stream()
        async with scratch_store_from(cli_env) as s:
            await s.append(run, [make_event(PipelineRequested(repo="/srv/repo"), run)], 0)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shared.app.cli", "events", run, "--follow", "--json", env=cli_env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            first = await asyncio.wait_for(proc.stdout.readline(), 60)  # it is following now
            assert json.loads(first)["type"] == "PipelineRequested"
            assert proc.returncode is None
            await s.append(run, [make_event(PipelineCompleted(verdict="not_merged"), run)])
            out, errs = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, first + out, errs.decode()

    code, out, errs = asyncio.run(scenario())
    assert code == 0
    assert [json.loads(line)["type"] for line in out.splitlines()] == ["PipelineRequested", "PipelineCompleted"]
    assert "completed: not merged" in errs


def test_export_then_import_into_a_fresh_database_rebuilds_the_same_read_models(cli_env, database_url, tmp_path):
    async def seed():
        async with scratch_store_from(cli_env) as s:
            await _append_run(s)
            await _append_run(s, merged=False)
            await _append_run(s, fail=True)
            return await _read_models(s)

    exported = asyncio.run(seed())
    dump = tmp_path / "log.jsonl"
    dump.write_text(cli(cli_env, "events", "export").stdout)
    lines = dump.read_text().splitlines()
    assert len(lines) == 24

    fresh_env = {**cli_env, "REPO_PILOT_DB_SCHEMA": cli_env["REPO_PILOT_DB_SCHEMA"] + "_copy"}

    async def imported_side():
        async with scratch_store(database_url, fresh_env["REPO_PILOT_DB_SCHEMA"]) as s:
            first = cli(fresh_env, "events", "import", str(dump))
            assert "imported 24 event(s) into 3 stream(s); 0 were already here" in first.stderr
            again = cli(fresh_env, "events", "import", str(dump))
            assert "imported 0 event(s) into 3 stream(s); 24 were already here" in again.stderr
            rows = await s.pool.fetch("SELECT event_id, stream_id, version, metadata FROM events ORDER BY global_position")
            assert len(rows) == 24  # twice imported, stored once
            original = [json.loads(line) for line in lines]
            assert [(str(r["event_id"]), r["stream_id"], r["version"]) for r in rows] == [
                (e["event_id"], e["stream_id"], e["version"]) for e in original]
            # Imported history is not work to do: every service that routes those events has them tracked.
            tracked = await s.pool.fetchval("SELECT count(*) FROM tracking WHERE consumer = 'analyzer'")
            assert tracked == 3 + 3 + 2  # requests, merges and ends: the analyzer routes all three
            return await _read_models(s)

    assert asyncio.run(imported_side()) == exported


def test_a_conflicting_import_is_refused_and_writes_nothing(cli_env, tmp_path):
    async def seed():
        async with scratch_store_from(cli_env) as s:
            return await _append_run(s)

    run = asyncio.run(seed())
    lines = cli(cli_env, "events", "export", run).stdout.splitlines()
    # The same stream and version, another event: the two logs diverged.
    forged = json.loads(lines[-1])
    forged["event_id"] = "0190b1c2-0000-7000-8000-000000000001"
    bad = tmp_path / "diverged.jsonl"
    bad.write_text("\n".join([*lines[:-1], json.dumps(forged)]) + "\n")
    proc = cli(cli_env, "events", "import", str(bad), check=False)
    assert proc.returncode == 2
    said = " ".join(proc.stderr.split())  # rich wraps long lines
    assert f"conflicting version: {run} version {len(lines)}" in said and said.count("error:") == 1
    assert "nothing was imported" in said

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text(lines[0] + "\n{not json\n")
    proc = cli(cli_env, "events", "import", str(garbage), check=False)
    assert proc.returncode == 2 and "line 2: not an exported event" in proc.stderr

    async def count():
        async with scratch_store_from(cli_env) as s:
            return await s.pool.fetchval("SELECT count(*) FROM events")

    assert asyncio.run(count()) == len(lines)


def test_an_import_plan_refuses_gaps_and_moved_ids():
    run = new_run_stream()
    first = make_event(PipelineRequested(repo="/r"), run).stored(1, 1)
    second = make_event(StepStarted(step="analyze"), run).stored(2, 2)
    assert plan_import([first, second], {}, {}) == [first, second]
    assert plan_import([first, second], {run: {1: first.event_id}}, {first.event_id: (run, 1)}) == [second]
    with pytest.raises(ImportRefused, match="jumps to version 2 where version 1"):
        plan_import([second], {}, {})
    with pytest.raises(ImportRefused, match="already stored as run-other version 4"):
        plan_import([first], {}, {first.event_id: ("run-other", 4)})
    with pytest.raises(ImportRefused, match="line 1: not an exported event"):
        parse_lines(['{"type": "NoSuchEvent", "data": {}}'])


class scratch_store_from:
    """The store of a CLI environment's schema (kept: the cli_env fixture drops it)."""

    def __init__(self, env):
        self.env = env

    async def __aenter__(self):
        from shared.store import PostgresEventStore

        self.store = await PostgresEventStore.connect(self.env["DATABASE_URL"], schema=self.env["REPO_PILOT_DB_SCHEMA"])
        return self.store

    async def __aexit__(self, *exc):
        await self.store.close()


async def _with_store(env, work):
    async with scratch_store_from(env) as s:
        return await work(s)


def test_beads_are_listed_with_the_gateways_filters(cli_env):
    run = asyncio.run(_with_store(cli_env, _append_run))
    rows = json.loads(cli(cli_env, "beads", "--run", run, "--category", "security", "--json").stdout)
    assert [(r["run_id"], r["bead_id"]) for r in rows] == [(run, "improvement:s1")]
    completed = json.loads(cli(cli_env, "beads", "--status", "completed", "--json").stdout)
    assert {r["bead_id"] for r in completed} == {"analyze"}
    assert len(json.loads(cli(cli_env, "beads", "--limit", "2", "--offset", "1", "--json").stdout)) == 2
    bad = cli(cli_env, "beads", "--status", "DONE", check=False)
    assert bad.returncode == 2 and "unknown status 'DONE'" in bad.stderr
