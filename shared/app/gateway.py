"""The HTTP gateway (DESIGN section 5): create, list, inspect, follow and replay runs; a web page.

Routes (OpenAPI at `/openapi.json`, browsable at `/docs` with Swagger UI served from the installed
`fastapi-offline` package, no CDN):

- `GET /` — the web page (runs, one run's beads live); its data calls carry the token
- `POST /runs` → 201 `{run_id, runner}`; 400 with the reason when the request is invalid (nothing
  appended); 409 while another run on the same repository and ref has not ended
- `GET /runs?status=&limit=&offset=` — runs, newest first; `GET /runs/{run_id}` — a run and its beads
- `GET /beads?run=&status=&category=&limit=&offset=` — beads across runs
- `GET /runs/{run_id}/events` — its events as a JSON list
- `GET /runs/{run_id}/events/stream` — Server-Sent Events: every event of the run so far, then
  new ones as they are appended; the stream ends after `PipelineCompleted` / `PipelineFailed`
  (`FeatureValidated` for a generation job). Each SSE `id` is the event's global position, so a
  client that reconnects with `Last-Event-ID` resumes where it stopped.
- `POST /runs/{run_id}/replay` → 201 `{run_id}`: the run again, or forked from a step
- `GET /healthz` — no auth; 503 when the database does not answer
- `GET /readyz` — no auth; what `repo-pilot health` reports, 503 when something needs attention

Auth rule: every route except `/healthz`, the docs and the page's static files needs
`Authorization: Bearer <token>` when `REPO_PILOT_API_TOKEN` is set (compared in constant time),
checked by a middleware before the request is parsed (so a bad body without a token is a 401,
never a 422 that tells what the API expects). With no token configured the gateway is for this
machine only: `repo-pilot gateway` refuses to bind anything but a loopback address
(`check_bind`), and the app itself answers 401 to any client whose address is not loopback.

What may be requested: `https` and `ssh` URLs of public hosts; local paths only with
`REPO_PILOT_GATEWAY_LOCAL_REPOS`, loopback/private hosts only with
`REPO_PILOT_GATEWAY_PRIVATE_HOSTS`; refs must be valid git ref names; malformed run ids are 404.

Who does the work: unless `REPO_PILOT_GATEWAY_CLUSTER` (or `repo-pilot gateway --cluster`) says a
cluster serves this database, the gateway runs the relay, projector and pipeline services itself,
so a run requested over HTTP makes progress; `runner` in the response says which.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from shared.app.eventlog import TERMINAL_TYPES, is_terminal
from shared.common.settings import Settings
from shared.events import CATEGORIES, Envelope
from shared.events.envelope import STREAM_ID

log = logging.getLogger("repo_pilot.gateway")

__all__ = ["TERMINAL_TYPES", "check_bind", "create_app", "is_loopback", "is_terminal", "token_matches"]
_LOOPBACK_NAMES = {"localhost"}
STATIC = Path(__file__).parent / "static"
# Served without a token: they hold no data (the page asks for the token, then calls the API with it).
PUBLIC_PATHS = ("/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/")
PUBLIC_PREFIXES = ("/static/", "/static-offline-docs/")


# -- pure decisions -------------------------------------------------------------------------


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; False for anything else (or nothing)."""
    if not host:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Raise ValueError when serving on `host` with this token would expose an open gateway."""
    if not token and not is_loopback(host):
        raise ValueError(
            f"refusing to serve on {host} without REPO_PILOT_API_TOKEN: anyone who can reach it "
            "could start runs on this machine. Set REPO_PILOT_API_TOKEN, or bind 127.0.0.1."
        )


def token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a bearer token (no early exit on the first wrong byte)."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def refusal(settings: Settings, client_host: str | None, authorization: str | None) -> str | None:
    """Why this request may not pass (None when it may): bearer token when one is configured,
    otherwise loopback clients only."""
    token = settings.api_token
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" and given.strip() else None
    if token:
        if token_matches(token, given):
            return None
        return "missing bearer token" if given is None else "wrong bearer token"
    if is_loopback(client_host):
        return None
    return "no REPO_PILOT_API_TOKEN is configured, so only local clients are served"


# -- response models ------------------------------------------------------------------------


class RunRequest(BaseModel):
    """What `POST /runs` accepts (the same choices as `repo-pilot run`)."""

    # Bounds (422 when exceeded) keep a request far below the store's event size limit.
    repo: str = Field(max_length=4096,
                      description="Path of a git repository on the gateway's host, or a git URL.")
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES), max_length=len(CATEGORIES),
                                  description=f"Any of: {', '.join(CATEGORIES)}.")
    threshold: float | None = Field(default=None, description="Auto-merge score, 1–10 (default from settings).")
    engine: str | None = Field(default=None, max_length=16, description="rules | llm (default: llm when a model is configured).")
    ref: str | None = Field(default=None, max_length=255, description="Branch, tag or sha to start from.")
    forge: str = Field(default="local", max_length=16, description="local | remote | github.")


class RunCreated(BaseModel):
    run_id: str
    runner: str = Field(description="Who will run it: this gateway's own services, or the cluster.")


class Run(BaseModel):
    """One row of the `runs` read model."""

    run_id: str
    kind: str
    repo: str | None = None
    status: str
    engine: str | None = None
    threshold: float | None = None
    categories: list[str] = []
    branch: str | None = None
    base_sha: str | None = None
    head_sha: str | None = None
    score: float | None = None
    passed: bool | None = None
    merged: bool | None = None
    pr_url: str | None = None
    error: str | None = None
    tests: dict[str, Any] = {}
    cost_usd: float = 0.0
    tokens: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_position: int


class Bead(BaseModel):
    """One tracked unit of work: a pipeline step or one improvement."""

    run_id: str
    bead_id: str
    seq: int
    kind: str
    title: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    error: str | None = None
    metadata: dict[str, Any] = {}


class RunDetail(BaseModel):
    run: Run
    beads: list[Bead]


class Event(BaseModel):
    """A stored event: the envelope with its payload as JSON."""

    event_id: str
    type: str
    stream_id: str
    version: int | None
    global_position: int | None
    occurred_at: datetime
    causation_id: str | None = None
    correlation_id: str | None = None
    metadata: dict[str, Any] = {}
    data: dict[str, Any]


class Health(BaseModel):
    status: str


def _event_out(event: Envelope) -> Event:
    return Event.model_validate(event.model_dump(mode="json"))


# -- wiring ---------------------------------------------------------------------------------


async def _open_store(settings: Settings):
    from shared.app.embedded import check_postgres, ensure_postgres
    from shared.app.runtime import open_store

    dsn = settings.database_url or await asyncio.to_thread(ensure_postgres, settings.home)
    await check_postgres(dsn)
    return await open_store(settings, dsn)


def create_app(settings: Settings, store=None, *, run_services: bool | None = None) -> FastAPI:
    """The gateway app. With `store` given (already connected) the caller owns it; otherwise the
    app opens one on startup (DATABASE_URL, or the embedded PostgreSQL) and closes it on shutdown.

    `run_services` (default: no cluster configured and no store handed in) starts the relay,
    projector and pipeline services in this process, so requested runs make progress."""
    from fastapi_offline import FastAPIOffline

    if run_services is None:
        run_services = store is None and not settings.gateway_cluster

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.store is not None and not run_services:
            yield
            return
        system = None
        try:
            if run_services:
                from shared.app.runtime import PIPELINE_SERVICES, System

                system = await System(settings, services=list(PIPELINE_SERVICES)).start()
                app.state.store = app.state.store or system.store
            else:
                app.state.store = await _open_store(settings)
        except Exception as exc:
            log.error("gateway cannot start: %s", exc)
            raise
        log.info("gateway: runs requested here are run by %s", app.state.runner)
        try:
            yield
        finally:
            if system is not None:
                await system.stop()
            elif app.state.store is not None:
                await app.state.store.close()
            app.state.store = None

    app = FastAPIOffline(title="Repo Pilot", version="1", redoc_url=None,
                         description="Create, list, follow and replay Repo Pilot runs.", lifespan=lifespan)
    app.state.store = store
    app.state.settings = settings
    app.state.runner = ("this gateway (its own relay, projector and services)" if run_services
                        else "the cluster serving this database (repo-pilot up, or the services)")

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        # Before routing and parsing: an unauthenticated client learns nothing about bodies or ids.
        if not is_public(request.url.path):
            why = refusal(settings, request.client.host if request.client else None,
                          request.headers.get("authorization"))
            if why is not None:
                return JSONResponse({"detail": why}, status.HTTP_401_UNAUTHORIZED,
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    app.include_router(_health)
    app.include_router(_page)
    app.include_router(_api, dependencies=[Depends(require_auth)])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


_bearer = HTTPBearer(auto_error=False, description="REPO_PILOT_API_TOKEN")


async def require_auth(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Bearer token when one is configured; otherwise loopback clients only (the middleware checks
    first; this declares the scheme in the OpenAPI document and guards a router mounted elsewhere)."""
    given = f"Bearer {credentials.credentials}" if credentials is not None else None
    why = refusal(request.app.state.settings, request.client.host if request.client else None, given)
    if why is not None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=why, headers={"WWW-Authenticate": "Bearer"})


def get_store(request: Request):
    store = request.app.state.store
    if store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="the event store is not connected")
    return store


def valid_run_id(run_id: str) -> str:
    """The path's run id; 404 when it cannot be one (so no query ever sees a malformed id)."""
    if not STREAM_ID.fullmatch(run_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no run {run_id[:80]!r} (run ids are run-<uuid>)")
    return run_id


StoreDep = Annotated[Any, Depends(get_store)]
RunId = Annotated[str, Depends(valid_run_id)]
_health = APIRouter(tags=["health"])
_page = APIRouter(include_in_schema=False)
_api = APIRouter(tags=["runs"], responses={401: {"description": "Missing or wrong bearer token"}})


@_health.get("/healthz", response_model=Health)
async def healthz(store: StoreDep) -> Health:
    """Liveness and database reachability (no auth)."""
    import asyncpg

    try:
        await store.pool.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"database: {exc}") from None
    return Health(status="ok")


class Readiness(BaseModel):
    ok: bool
    checks: list[dict[str, Any]]


@_health.get("/readyz", response_model=Readiness, responses={503: {"description": "Something needs attention"}})
async def readyz(request: Request, store: StoreDep) -> Any:
    """What `repo-pilot health` reports (relay and consumer lag, quarantined events, idle runs),
    no auth; 503 when something needs attention. Lag is compared with the previous call's sample,
    so lag that did not move between two probes fails."""
    from fastapi.responses import JSONResponse

    from shared.app.health import collect
    from shared.app.runtime import available_services

    settings: Settings = request.app.state.settings
    report = await collect(store, nats_url=settings.nats_url, stream_name=settings.stream_name,
                           services=available_services(), stall_after=settings.stall_after_seconds,
                           previous=getattr(request.app.state, "lag_sample", None))
    request.app.state.lag_sample = report.lag
    body = Readiness(ok=report.ok, checks=[{"name": n, "ok": ok, "detail": d} for n, ok, d in report.checks])
    return JSONResponse(body.model_dump(), status_code=200 if report.ok else 503)


@_api.post("/runs", status_code=status.HTTP_201_CREATED, response_model=RunCreated,
           responses={400: {"description": "Invalid request (nothing was appended)"},
                      409: {"description": "A run on the same repository and ref has not ended"}})
async def create_run(body: RunRequest, request: Request, store: StoreDep) -> RunCreated:
    """Request a pipeline run; `runner` says who will run it."""
    from shared.app.requests import check_remote, validate_request

    settings: Settings = request.app.state.settings

    def validate():
        check_remote(body.repo, allow_local=settings.gateway_local_repos,
                     allow_private=settings.gateway_private_hosts)
        return validate_request(body.repo, body.categories, body.threshold, body.engine, settings, body.ref,
                                body.forge)

    try:
        # The checks touch the disk (git) and DNS; keep them off the event loop.
        req = await asyncio.to_thread(validate)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    req = req.model_copy(update={"requested_by": "gateway"})
    return RunCreated(run_id=await _append(store, req), runner=request.app.state.runner)


async def _append(store, req, metadata: dict | None = None) -> str:
    """Append a request; 409 while another run on the same repository and ref has not ended."""
    from shared.app.requests import RunInProgress, append_request

    try:
        return await append_request(store, req, service="gateway", metadata=metadata)
    except RunInProgress as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None


RUN_STATUSES = ("RUNNING", "COMPLETED", "FAILED")
BEAD_STATUSES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "SKIPPED")


@_api.get("/runs", response_model=list[Run])
async def list_runs(
    store: StoreDep,
    run_status: Annotated[str | None, Query(alias="status", pattern="^(" + "|".join(RUN_STATUSES) + ")$",
                                            description="Only runs in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[Run]:
    """Runs, newest first (`limit` at a time from `offset`)."""
    from shared.store.queries import find_runs
    from shared.store.projections import Projector

    await Projector(store).run_once()
    return [Run.model_validate(r) for r in await find_runs(store, run_status, limit, offset)]


@_api.get("/beads", response_model=list[Bead])
async def list_beads(
    store: StoreDep,
    run: Annotated[str | None, Query(max_length=80, pattern=f"^{STREAM_ID.pattern}$",
                                     description="Only this run's beads (run-<uuid>).")] = None,
    bead_status: Annotated[str | None, Query(alias="status", pattern="^(" + "|".join(BEAD_STATUSES) + ")$")] = None,
    category: Annotated[str | None, Query(pattern="^(" + "|".join(CATEGORIES) + ")$",
                                          description="Only improvements of this category.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[Bead]:
    """Beads across runs (newest run first, each in chain order), filtered and paginated."""
    from shared.store.queries import find_beads
    from shared.store.projections import Projector

    await Projector(store).run_once()
    return [Bead.model_validate(b) for b in await find_beads(store, run, bead_status, category, limit, offset)]


@_api.get("/runs/{run_id}", response_model=RunDetail, responses={404: {"description": "No such run"}})
async def get_run(run_id: RunId, store: StoreDep) -> RunDetail:
    """A run and its bead chain."""
    from shared.store.projections import Projector
    from shared.store.projections import get_run as read_run

    await Projector(store).run_once()
    run, beads = await read_run(store, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no run {run_id!r}")
    return RunDetail(run=Run.model_validate(run), beads=[Bead.model_validate(b) for b in beads])


async def _run_events(run_id: RunId, store: StoreDep) -> list[Envelope]:
    events = await store.read_correlated(run_id)
    if not events:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no run {run_id!r}")
    return events


@_api.get("/runs/{run_id}/events", response_model=list[Event],
          responses={404: {"description": "No such run"}})
async def run_events(events: Annotated[list[Envelope], Depends(_run_events)]) -> list[Event]:
    """Every event of the run (and of work correlated with it), in log order."""
    return [_event_out(e) for e in events]


async def _stream_start(run_id: RunId, store: StoreDep) -> tuple[int, list[Envelope]]:
    """Where the live part starts, and the run's history (404 before the stream starts).

    The position is taken before the history is read: appends are serialised, so nothing
    committed after it is missed and nothing before it needs the (log-wide) tail.
    """
    live_from = await store.last_position()
    return live_from, await _run_events(run_id, store)


@_api.get("/runs/{run_id}/events/stream", response_class=EventSourceResponse,
          responses={404: {"description": "No such run"}})
async def stream_events(
    run_id: RunId, store: StoreDep,
    start: Annotated[tuple[int, list[Envelope]], Depends(_stream_start)],
    last_event_id: Annotated[int | None, Header(ge=0, le=2**62, description="Resume after this global position.")] = None,
) -> AsyncIterator[ServerSentEvent]:
    """The run's events as Server-Sent Events (`event:` type, `id:` global position, `data:` the
    event as JSON): everything so far, then live until the run completes or fails."""
    live_from, history = start
    sent = last_event_id or 0
    for event in history:
        if event.global_position > sent:
            yield _sse(event)
            sent = event.global_position
        if is_terminal(event, run_id):
            return
    async for event in store.tail(max(live_from, sent), poll_interval=1.0):
        if run_id not in (event.stream_id, event.correlation_id) or event.global_position <= sent:
            continue
        yield _sse(event)
        sent = event.global_position
        if is_terminal(event, run_id):
            return


def _sse(event: Envelope) -> ServerSentEvent:
    return ServerSentEvent(raw_data=event.to_json(), event=event.type, id=str(event.global_position))


class ReplayRequest(BaseModel):
    """What `POST /runs/{run_id}/replay` accepts (all optional: the whole run again)."""

    from_step: str | None = Field(default=None, max_length=16, description=(
        "Fork from this step (analyze, suggest, execute, test, review, merge, docs): the new run copies "
        "the original's events up to it and goes on from there. Empty: the whole run again."))
    reuse_llm: bool = Field(default=False, description="Answer from the run's recorded model calls.")


@_api.post("/runs/{run_id}/replay", status_code=status.HTTP_201_CREATED, response_model=RunCreated,
           responses={404: {"description": "No such run"},
                      400: {"description": "The run never reached that step, or no such step"},
                      409: {"description": "A run on the same repository and ref has not ended"}})
async def replay_run(run_id: RunId, request: Request, store: StoreDep,
                     body: ReplayRequest | None = None) -> RunCreated:
    """Replay a recorded run as a new run, from the start or forked from a step; changes the target
    already has are never merged again."""
    from shared.app.replay import ReplayRefused, replay
    from shared.app.requests import RunInProgress

    body = body or ReplayRequest()
    try:
        new_run, _ = await replay(store, run_id, body.from_step, reuse_llm=body.reuse_llm, service="gateway")
    except LookupError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no run {run_id!r} to replay") from None
    except ReplayRefused as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    except RunInProgress as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return RunCreated(run_id=new_run, runner=request.app.state.runner)


@_page.get("/")
async def page() -> FileResponse:
    """The web page (no data in it: it asks for the token and calls the API)."""
    return FileResponse(STATIC / "index.html", media_type="text/html")
