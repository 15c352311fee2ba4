"""What a user sees of faults (issue 13), through real processes and real HTTP over ASGI:
`repo-pilot health` reports quarantined events and fails; `runs`, `status`, `events --json` and
`projections rebuild` skip an unreadable row and say so; inputs are bounded where they enter."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

try:
    import httpx2 as httpx
except ImportError:  # the upstream name, where that is what is installed
    import httpx

from shared.app.gateway import create_app
from tests.conftest import make_git_repo
from tests.integration.test_cli import cli

pytestmark = pytest.mark.integration


async def _bad_row(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        stream = f"run-{uuid.uuid4()}"
        await conn.execute(
            "INSERT INTO events (stream_id, version, event_id, type, data, occurred_at) "
            "VALUES ($1, 1, $2, 'NoSuchEvent', '{}'::jsonb, now())", stream, uuid.uuid4())
        await conn.execute(
            "INSERT INTO relay_faults (global_position, stream_id, type, kind, reason, relay) "
            "SELECT max(global_position), $1, 'NoSuchEvent', 'undecodable', 'unknown event type', 'relay' "
            "FROM events", stream)
    finally:
        await conn.close()


def test_readers_skip_an_unreadable_row_and_health_reports_it(cli_env, database_url, db_schema, tmp_path):
    import asyncio

    repo = make_git_repo(tmp_path / "target", {"app.py": "x = 1\n"})
    run_id = cli(cli_env, "request", str(repo)).stdout.strip()
    assert "ok" in cli(cli_env, "health", check=False).stdout
    asyncio.run(_bad_row(database_url, db_schema))

    # `runs` projects past the bad row (and says so); `status` then has nothing left to skip.
    for args in (["runs"], ["events", "--json"], ["projections", "rebuild"]):
        proc = cli(cli_env, *args)
        assert "skipped 1 unreadable event" in proc.stderr, args
    assert run_id in cli(cli_env, "status", run_id).stdout
    events = [json.loads(line) for line in cli(cli_env, "events", "--json").stdout.splitlines()]
    assert [e["type"] for e in events] == ["PipelineRequested"]

    health = cli(cli_env, "health", "--json", check=False)
    assert health.returncode == 1
    report = json.loads(health.stdout)
    assert not report["ok"] and report["faults"][0]["type"] == "NoSuchEvent"
    assert any(c["name"] == "relay faults" and not c["ok"] for c in report["checks"])


def test_cli_refuses_an_oversized_request_before_touching_anything(cli_env):
    proc = cli(cli_env, "request", "/tmp/" + "a" * 10_000, check=False)
    assert proc.returncode == 2 and "repo is 10,005 characters long; at most 4,096" in proc.stderr


async def test_gateway_bounds_inputs(settings, store, tmp_path):
    app = create_app(settings, store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        huge = await client.post("/runs", json={"repo": "x" * 5_000_000})
        assert huge.status_code == 422 and "4096" in huge.text
        long_ref = await client.post("/runs", json={"repo": str(tmp_path), "ref": "r" * 300})
        assert long_ref.status_code == 422
    assert await store.last_position() == 0  # nothing appended


async def test_one_run_at_a_time_per_repository_and_ref(settings, store, tmp_path):
    import asyncio

    from shared.app.requests import RunInProgress, append_request
    from shared.events import PipelineCompleted, PipelineRequested, make_event

    repo = str(make_git_repo(tmp_path / "target", {"app.py": "x = 1\n"}))
    request = PipelineRequested(repo=repo)
    raced = await asyncio.gather(*(append_request(store, request, service="test") for _ in range(5)),
                                 return_exceptions=True)
    winners = [r for r in raced if isinstance(r, str)]
    refused = [r for r in raced if isinstance(r, RunInProgress)]
    assert len(winners) == 1 and len(refused) == 4
    assert winners[0] in str(refused[0]) and "in progress" in str(refused[0])
    other_ref = await append_request(store, request.model_copy(update={"ref": "dev"}), service="test")
    assert other_ref != winners[0]  # another ref is another target

    # local paths over HTTP only where the gateway is told to take them (REPO_PILOT_GATEWAY_LOCAL_REPOS)
    app = create_app(settings.model_copy(update={"gateway_local_repos": True}), store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        busy = await client.post("/runs", json={"repo": repo})
        assert busy.status_code == 409 and winners[0] in busy.json()["detail"]
        await store.append(winners[0], [make_event(PipelineCompleted(verdict="merged"), winners[0])])
        assert (await client.post("/runs", json={"repo": repo})).status_code == 201
