"""The HTTP gateway against real Postgres: the app over ASGI, over real HTTP (uvicorn), and as
the `repo-pilot gateway` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys

import pytest

try:
    import httpx2 as httpx
except ImportError:  # the upstream name, where that is what is installed
    import httpx

from shared.app.gateway import check_bind, create_app
from shared.events import PipelineCompleted, RepoAnalyzed, StepStarted, make_event
from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def gw_settings(settings):
    return settings.model_copy(update={"api_token": TOKEN, "gateway_local_repos": True})


@pytest.fixture
async def client(gw_settings, store):
    app = create_app(gw_settings, store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


@pytest.fixture
def repo(tmp_path):
    return make_git_repo(tmp_path / "target", {"app.py": "print('hi')\n"})


async def _create(client, repo, **body) -> str:
    resp = await client.post("/runs", json={"repo": str(repo), **body}, headers=AUTH)
    assert resp.status_code == 201, resp.text
    return resp.json()["run_id"]


async def test_every_route_but_health_needs_the_token(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    for method, path in [("GET", "/runs"), ("GET", "/runs/run-x"), ("GET", "/runs/run-x/events"),
                         ("POST", "/runs/run-x/replay"), ("GET", "/runs/run-x/events/stream")]:
        missing = await client.request(method, path)
        assert missing.status_code == 401, (method, path)
        assert missing.json()["detail"] == "missing bearer token"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}x"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong bearer token"
    assert (await client.post("/runs", json={"repo": "/tmp"})).status_code == 401
    assert (await client.get("/runs", headers=AUTH)).status_code == 200


async def test_without_a_token_only_local_clients_are_served(settings, store):
    app = create_app(settings.model_copy(update={"gateway_local_repos": True}), store)  # no REPO_PILOT_API_TOKEN
    local = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    remote = httpx.ASGITransport(app=app, client=("10.1.2.3", 5000))
    async with httpx.AsyncClient(transport=local, base_url="http://gw") as c:
        assert (await c.get("/runs")).status_code == 200
    async with httpx.AsyncClient(transport=remote, base_url="http://gw") as c:
        refused = await c.get("/runs")
        assert refused.status_code == 401 and "REPO_PILOT_API_TOKEN" in refused.json()["detail"]
        assert (await c.get("/healthz")).status_code == 200


def test_binding_beyond_loopback_needs_a_token():
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(host, None)
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.com"):
        with pytest.raises(ValueError, match="REPO_PILOT_API_TOKEN"):
            check_bind(host, None)
        check_bind(host, "a-token")


async def test_create_run_appends_the_request(client, store, repo):
    run_id = await _create(client, repo, categories=["security", "compliance"], threshold=8)
    assert run_id.startswith("run-")
    [event] = await store.read_stream(run_id)
    assert event.type == "PipelineRequested"
    assert event.data.repo == str(repo) and event.data.categories == ["security", "compliance"]
    assert event.data.threshold == 8.0 and event.data.engine == "rules"  # no model configured
    assert event.data.requested_by == "gateway" and event.metadata["service"] == "gateway"


@pytest.mark.parametrize("body, message", [
    ({"repo": "PLAIN"}, "not a git repository"),
    ({"repo": "MISSING"}, "no such directory"),
    ({"repo": "REPO", "categories": ["speed"]}, "unknown categories"),
    ({"repo": "REPO", "engine": "gpt"}, "unknown engine"),
    ({"repo": "REPO", "engine": "llm"}, "needs a model"),
    ({"repo": "REPO", "threshold": 11}, "out of range"),
    ({"repo": "REPO", "forge": "gitlab"}, "unknown forge"),
])
async def test_a_bad_request_is_refused_and_nothing_is_appended(client, store, repo, tmp_path, body, message):
    (tmp_path / "plain").mkdir()
    paths = {"PLAIN": tmp_path / "plain", "MISSING": tmp_path / "nope", "REPO": repo}
    resp = await client.post("/runs", json={**body, "repo": str(paths[body["repo"]])}, headers=AUTH)
    assert resp.status_code == 400
    assert message in resp.json()["detail"]
    assert await store.read_all(0) == []


async def test_a_malformed_body_is_a_422(client, store):
    resp = await client.post("/runs", json={"categories": "security"}, headers=AUTH)
    assert resp.status_code == 422
    assert await store.read_all(0) == []


async def test_runs_and_a_run_with_its_beads(client, store, repo):
    run_id = await _create(client, repo)
    await store.append(run_id, [make_event(StepStarted(step="analyze", engine="rules"), run_id)])

    runs = (await client.get("/runs", headers=AUTH)).json()
    assert [r["run_id"] for r in runs] == [run_id]
    assert runs[0]["status"] == "RUNNING" and runs[0]["repo"] == str(repo)

    detail = (await client.get(f"/runs/{run_id}", headers=AUTH)).json()
    assert detail["run"]["run_id"] == run_id
    beads = {b["bead_id"]: b for b in detail["beads"]}
    assert beads["analyze"]["status"] == "RUNNING" and beads["analyze"]["title"] == "analyze (rules engine)"
    assert beads["review"]["status"] == "PENDING"

    events = (await client.get(f"/runs/{run_id}/events", headers=AUTH)).json()
    assert [e["type"] for e in events] == ["PipelineRequested", "StepStarted"]
    assert events[0]["data"]["repo"] == str(repo) and events[1]["data"]["step"] == "analyze"

    for path in ("/runs/run-unknown", "/runs/run-unknown/events", "/runs/run-unknown/events/stream"):
        missing = await client.get(path, headers=AUTH)
        assert missing.status_code == 404 and "run-unknown" in missing.json()["detail"]


async def test_replay_pins_the_analyzed_commit(client, store, repo):
    run_id = await _create(client, repo, categories=["security"])
    analyzed = RepoAnalyzed(base_sha="a" * 40, default_branch="main", repo_path=str(repo),
                            specification="s", graph="g", architecture="a")
    await store.append(run_id, [make_event(analyzed, run_id)])

    resp = await client.post(f"/runs/{run_id}/replay", headers=AUTH)
    assert resp.status_code == 201
    new_id = resp.json()["run_id"]
    assert new_id != run_id
    [event] = await store.read_stream(new_id)
    assert event.metadata["replayed_from"] == run_id
    assert event.data.ref == "a" * 40 and event.data.categories == ["security"]
    assert (await client.post("/runs/run-unknown/replay", headers=AUTH)).status_code == 404
    assert {r["run_id"] for r in (await client.get("/runs", headers=AUTH)).json()} == {run_id, new_id}


async def test_openapi_lists_the_routes(client):
    spec = (await client.get("/openapi.json")).json()
    assert {"/runs", "/runs/{run_id}", "/runs/{run_id}/events", "/runs/{run_id}/events/stream",
            "/runs/{run_id}/replay", "/healthz"} <= set(spec["paths"])
    assert spec["paths"]["/runs"]["post"]["responses"]["201"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "RunDetail" in spec["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200


# -- over real HTTP --------------------------------------------------------------------------


@pytest.fixture
async def live_gateway(gw_settings, store):
    """The app served by uvicorn on a free port (ASGITransport buffers whole responses, so a
    live stream needs a real server)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(gw_settings, store), host="127.0.0.1", port=0,
                                           log_level="warning", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def _next_event(lines) -> dict:
    """The next SSE event (fields of one blank-line-terminated block)."""
    fields: dict = {}
    async for line in lines:
        if not line:
            if fields:
                return fields
            continue
        if line.startswith(":"):
            continue  # keep-alive comment
        key, _, value = line.partition(": ")
        fields[key] = value
    raise AssertionError(f"stream ended mid-event: {fields}")


async def test_the_event_stream_is_live_and_ends_with_the_run(live_gateway, store, repo):
    async with httpx.AsyncClient(base_url=live_gateway, headers=AUTH, timeout=20) as c:
        run_id = (await c.post("/runs", json={"repo": str(repo)})).json()["run_id"]
        async with asyncio.timeout(30), c.stream("GET", f"/runs/{run_id}/events/stream") as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.aiter_lines()
            first = await _next_event(lines)
            assert first["event"] == "PipelineRequested" and json.loads(first["data"])["stream_id"] == run_id

            # Appended while the client is connected: it arrives on the open stream.
            [started] = await store.append(run_id, [make_event(StepStarted(step="analyze"), run_id)])
            other = make_git_repo(repo.parent / "other", {"x.py": "x = 1\n"})
            other_id = (await c.post("/runs", json={"repo": str(other)})).json()["run_id"]  # not this run
            live = await _next_event(lines)
            assert live["event"] == "StepStarted" and live["id"] == str(started.global_position)

            await store.append(run_id, [make_event(PipelineCompleted(verdict="not_merged"), run_id)])
            last = await _next_event(lines)
            assert last["event"] == "PipelineCompleted"
            assert [line async for line in lines if line.strip()] == []  # the stream closed

        # A finished run's stream replays its history and closes; Last-Event-ID resumes.
        async with asyncio.timeout(30):
            resp = await c.get(f"/runs/{run_id}/events/stream", headers={"Last-Event-ID": str(first["id"])})
        ids = [line.split(": ", 1)[1] for line in resp.text.splitlines() if line.startswith("event: ")]
        assert ids == ["StepStarted", "PipelineCompleted"]
        assert other_id not in resp.text


# -- the command ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_gateway_command_refuses_an_open_public_bind(cli_env):
    proc = subprocess.run([sys.executable, "-m", "shared.app.cli", "gateway", "--host", "0.0.0.0"],
                          env=cli_env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "REPO_PILOT_API_TOKEN" in proc.stderr


async def test_the_gateway_command_serves_with_its_own_store(cli_env, database_url, db_schema, tmp_path):
    port = _free_port()
    env = {**cli_env, "REPO_PILOT_API_TOKEN": TOKEN, "REPO_PILOT_GATEWAY_CLUSTER": "1",
           "REPO_PILOT_GATEWAY_LOCAL_REPOS": "1"}
    log = tmp_path / "gateway.log"
    with log.open("w") as sink:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "shared.app.cli", "gateway", "--port", str(port),
                                                    env=env, stdout=sink, stderr=sink)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            async with asyncio.timeout(60):
                while True:
                    assert proc.returncode is None, log.read_text()
                    with contextlib.suppress(httpx.TransportError):
                        if (await c.get("/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
            repo = make_git_repo(tmp_path / "served", {"a.py": "a = 1\n"})
            created = await c.post("/runs", json={"repo": str(repo)}, headers=AUTH)
            assert created.status_code == 201
            runs = (await c.get("/runs", headers=AUTH)).json()
            assert [r["run_id"] for r in runs] == [created.json()["run_id"]]
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        import asyncpg

        conn = await asyncpg.connect(database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{db_schema}" CASCADE')
        await conn.close()


async def test_a_fork_over_http_copies_the_run_up_to_its_step(client, store, repo):
    run_id = await _create(client, repo, categories=["security"])
    started = make_event(StepStarted(step="analyze"), run_id)
    await store.append(run_id, [started])
    bad = await client.post(f"/runs/{run_id}/replay", json={"from_step": "review"}, headers=AUTH)
    assert bad.status_code == 400 and "never reached 'review'; it started analyze" in bad.json()["detail"]
    assert (await client.post(f"/runs/{run_id}/replay", json={"from_step": "x" * 17}, headers=AUTH)).status_code == 422

    resp = await client.post(f"/runs/{run_id}/replay", json={"from_step": "analyze", "reuse_llm": True}, headers=AUTH)
    assert resp.status_code == 409  # the original has not ended: two runs on one target would both merge
    await store.append(run_id, [make_event(PipelineCompleted(verdict="not_merged"), run_id)])
    resp = await client.post(f"/runs/{run_id}/replay", json={"from_step": "analyze", "reuse_llm": True}, headers=AUTH)
    assert resp.status_code == 201
    [request] = await store.read_stream(resp.json()["run_id"])
    assert request.metadata["replayed_from"] == run_id and request.metadata["reuse_llm"] is True


# -- limits and queries -----------------------------------------------------------------------


async def test_no_token_is_a_401_before_any_validation(client):
    for method, path, body in [("POST", "/runs", b"{not json"), ("POST", "/runs", b'{"repo": 5}'),
                               ("GET", "/runs/%00bad", None), ("GET", "/runs?limit=-3", None),
                               ("GET", "/beads?status=NOPE", None), ("POST", "/runs/run-x/replay", b"[")]:
        resp = await client.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.json()["detail"] == "missing bearer token"


async def test_malformed_run_ids_are_404(client):
    for path in ("/runs/not-a-run", "/runs/run-..", "/runs/" + "run-" + "a" * 200 + "/events",
                 "/runs/gen-%20x/events/stream"):
        resp = await client.get(path, headers=AUTH)
        assert resp.status_code == 404 and "run ids are run-<uuid>" in resp.json()["detail"], path
    assert (await client.post("/runs/bad%00id/replay", headers=AUTH)).status_code == 404


@pytest.mark.parametrize("body, message", [
    ({"ref": "-uhack"}, "not a valid git ref name"),
    ({"ref": "main..other"}, "not a valid git ref name"),
    ({"repo": "file:///etc"}, "URL scheme 'file' is not accepted"),
    ({"repo": "http://example.com/x.git"}, "URL scheme 'http' is not accepted"),
    ({"repo": "ext::sh -c touch% /tmp/x"}, "local repository paths are not accepted"),
    ({"repo": "https://127.0.0.1/x.git"}, "local or private address"),
    ({"repo": "ssh://git@10.1.2.3/x.git"}, "local or private address"),
    ({"repo": "git@[::1]:x.git"}, "local or private address"),
    ({"repo": "https://localhost/x.git"}, "local or private address"),
])
async def test_what_a_gateway_may_fetch_is_limited(gw_settings, store, repo, body, message):
    strict = gw_settings.model_copy(update={"gateway_local_repos": False})
    app = create_app(strict, store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        # A public address literal: no DNS needed on an offline test machine.
        resp = await c.post("/runs", json={"repo": "https://140.82.112.3/x.git", **body}, headers=AUTH)
        assert resp.status_code == 400 and message in resp.json()["detail"], resp.text
        local = await c.post("/runs", json={"repo": str(repo)}, headers=AUTH)
        assert local.status_code == 400 and "REPO_PILOT_GATEWAY_LOCAL_REPOS" in local.json()["detail"]
    assert await store.last_position() == 0


async def test_runs_and_beads_are_filtered_and_paginated(client, store, repo, tmp_path):
    from shared.events import Improvement, ImprovementsSuggested, PipelineFailed

    first = await _create(client, repo, categories=["security", "compliance"])
    suggested = ImprovementsSuggested(improvements=[
        Improvement(id="s1", category="security", title="pin", rationale="r"),
        Improvement(id="c1", category="compliance", title="license", rationale="r")])
    await store.append(first, [make_event(StepStarted(step="analyze"), first), make_event(suggested, first),
                               make_event(PipelineFailed(step="suggest", error="boom"), first)])
    other = make_git_repo(tmp_path / "other", {"b.py": "b = 2\n"})
    second = await _create(client, other)

    created = await client.post("/runs", json={"repo": str(make_git_repo(tmp_path / "third", {"c.py": ""}))},
                                headers=AUTH)
    assert created.json()["runner"].startswith("the cluster")  # this app was handed a store: it runs nothing
    runs = (await client.get("/runs?status=FAILED", headers=AUTH)).json()
    assert [r["run_id"] for r in runs] == [first]
    assert len((await client.get("/runs?status=RUNNING", headers=AUTH)).json()) == 2
    page1 = (await client.get("/runs?limit=2", headers=AUTH)).json()
    page2 = (await client.get("/runs?limit=2&offset=2", headers=AUTH)).json()
    assert len(page1) == 2 and len(page2) == 1 and {r["run_id"] for r in page1 + page2} >= {first, second}
    assert (await client.get("/runs?status=bogus", headers=AUTH)).status_code == 422

    security = (await client.get(f"/beads?run={first}&category=security", headers=AUTH)).json()
    assert [(b["run_id"], b["bead_id"]) for b in security] == [(first, "improvement:s1")]
    failed = (await client.get("/beads?status=FAILED", headers=AUTH)).json()
    assert [(b["run_id"], b["bead_id"]) for b in failed] == [(first, "analyze")]
    all_second = (await client.get(f"/beads?run={second}", headers=AUTH)).json()
    assert [b["bead_id"] for b in all_second][:2] == ["analyze", "suggest"]
    assert len((await client.get(f"/beads?run={second}&limit=3&offset=1", headers=AUTH)).json()) == 3
    assert (await client.get("/beads?category=nonsense", headers=AUTH)).status_code == 422


async def test_the_docs_and_the_page_are_served_from_this_gateway(client):
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()
    scripts = [part.split('"')[1] for part in docs.text.split("src=")[1:]]
    assert scripts and all(s.startswith("/") for s in scripts)
    for asset in scripts:
        assert (await client.get(asset)).status_code == 200, asset
    assert (await client.get("/redoc")).status_code in (401, 404)
    page = await client.get("/")
    assert page.status_code == 200 and "Repo Pilot" in page.text and "/static/app.js" in page.text
    assert (await client.get("/static/app.js")).status_code == 200


async def test_readyz_reports_what_health_reports_and_fails_on_a_log_nobody_serves(client, store, tmp_path):
    """`/readyz` (no token) is `repo-pilot health` over HTTP: a request appended while no relay,
    projector or service runs leaves the log unserved, and the probe says so with a 503."""
    from shared.events import PipelineRequested, make_event

    first = await client.get("/readyz")
    assert first.status_code in (200, 503) and {c["name"] for c in first.json()["checks"]} >= {"log", "relay"}
    run = "run-" + "0" * 8 + "-0000-7000-8000-" + "0" * 12
    await store.append(run, [make_event(PipelineRequested(repo=str(tmp_path)), run)])
    second = await client.get("/readyz")
    assert second.status_code == 503
    failing = {c["name"]: c["detail"] for c in second.json()["checks"] if not c["ok"]}
    assert "projector" in failing and "of 1" in failing["projector"], second.json()
