"""Every request ends (issue 17): a request that cannot be read is a failed run the user sees, with
the reason, and never blocks its repository. Real processes, real Postgres (and NATS for `run`)."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from tests.conftest import make_git_repo
from tests.integration.test_cli import cli

pytestmark = pytest.mark.integration


def _write_request(database_url: str, schema: str, repo: str, metadata: object) -> str:
    """A PipelineRequested for `repo` written around the store (an old build, a manual insert)."""
    stream = f"run-{uuid.uuid4()}"

    async def insert():
        conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
        try:
            await conn.execute(
                "INSERT INTO events (stream_id, version, event_id, type, data, metadata, occurred_at, "
                "correlation_id) VALUES ($1, 1, $2, 'PipelineRequested', $3::text::jsonb, $4::text::jsonb, "
                "now(), $1)", stream, uuid.uuid4(), json.dumps({"repo": repo}), json.dumps(metadata))
        finally:
            await conn.close()

    asyncio.run(insert())
    return stream


def test_a_request_that_cannot_be_read_is_a_failed_run_and_blocks_nothing(cli_env, database_url, db_schema,
                                                                           tmp_path):
    repo = str(make_git_repo(tmp_path / "target", {"app.py": "x = 1\n"}))
    cli(cli_env, "runs")  # creates the schema
    odd_metadata = _write_request(database_url, db_schema, repo, [1, 2])
    odd_version = _write_request(database_url, db_schema, repo, {"schema_version": "abc"})

    # The next request for the same repository is taken (it used to be refused for ever: "a run
    # on ... is in progress", naming a run that no service would ever see).
    accepted = cli(cli_env, "request", repo, check=False)
    assert accepted.returncode == 0, accepted.stderr
    run_id = accepted.stdout.strip()
    assert run_id.startswith("run-")

    listed = cli(cli_env, "runs")
    assert "skipped 2 unreadable event(s)" in listed.stderr
    for bad in (odd_metadata, odd_version):
        assert bad in listed.stdout
    first = cli(cli_env, "status", odd_metadata).stdout
    assert "FAILED" in first and "could not be read" in first and "metadata is a JSON array" in first
    second = cli(cli_env, "status", odd_version).stdout
    assert "FAILED" in second and "schema_version 'abc'" in second
    assert "RUNNING" in cli(cli_env, "status", run_id).stdout
    events = cli(cli_env, "events", odd_metadata)  # the run is its one unreadable row: said, not "no run"
    assert events.stdout == "" and "unreadable event(s)" in events.stderr

    # A rebuild gives the same failed runs; `health` names both rows as quarantined.
    cli(cli_env, "projections", "rebuild")
    assert "FAILED" in cli(cli_env, "status", odd_metadata).stdout
    report = json.loads(cli(cli_env, "health", "--json", check=False).stdout)
    assert {f["stream_id"] for f in report["faults"]} == {odd_metadata, odd_version}


@pytest.mark.e2e
def test_a_run_after_an_unreadable_request_on_the_same_repository_completes(cli_env, database_url, db_schema,
                                                                            tmp_path):
    repo = str(make_git_repo(tmp_path / "target", {"app.py": "import os\nx = 1\n"}))
    cli(cli_env, "runs")
    bad = _write_request(database_url, db_schema, repo, [1, 2])
    proc = cli(cli_env, "run", repo, "--local", "--categories", "security", "--timeout", "110", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = cli(cli_env, "runs").stdout
    assert bad in runs and "FAILED" in runs and "COMPLETED" in runs
