"""`repo-pilot`: the command line (typer + rich)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared.app import render
from shared.app.process import arun, err, fail
from shared.app.requests import append_request
from shared.common.redaction import redact
from shared.common.settings import Settings
from shared.events import CATEGORIES, PipelineRequested
from shared.events.gen import DEFAULT_MIN_MUTATION_SCORE, DEFAULT_MUTANTS

def _flags_without_a_type() -> None:
    """typer's rich help (since 0.2x, fastapi/typer#1410) prints a type column for every option, so
    each flag, `--help` too, reads `<bool>` as if it took a value. A flag takes none: no type."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "flags_hidden", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.flags_hidden = True
    TyperOption.display_type_rich = display_type_rich


_flags_without_a_type()
app = typer.Typer(help="Repo Pilot: analyze, improve, review, test and merge a git repository.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
projections_app = typer.Typer(help="Read models folded from the event log.")
servers_app = typer.Typer(help="The embedded NATS and PostgreSQL servers.")
app.add_typer(projections_app, name="projections")
app.add_typer(servers_app, name="servers")
console = Console()

CategoriesOpt = Annotated[str, typer.Option("--categories", "-c", help="Comma-separated: " + ",".join(CATEGORIES))]
ThresholdOpt = Annotated[float | None, typer.Option("--threshold", "-t", help="Auto-merge score (1–10).")]
EngineOpt = Annotated[str | None, typer.Option("--engine", "-e", help="rules | llm (default: llm when a model is configured)")]


@app.callback()
def _main(env_file: Annotated[Path | None, typer.Option(
        "--env-file", help="Read settings from this .env file too (also REPO_PILOT_ENV_FILE). "
                           "A .env in the current directory is never read.")] = None) -> None:
    import os

    from shared.common.settings import ENV_FILE_VARIABLE

    if env_file is not None:
        os.environ[ENV_FILE_VARIABLE] = str(env_file.expanduser().resolve())


def _settings() -> Settings:
    from shared.common.settings import EnvFileError

    from pydantic import ValidationError

    try:
        return Settings()
    except EnvFileError as exc:
        fail(str(exc))
    except ValidationError as exc:  # a bad value in the environment or a .env file: one line each
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            err.print(f"[bold red]error:[/] {name}={error.get('input')!r}: {error['msg']}", highlight=False,
                      soft_wrap=True)  # one line in a log too (rich wraps a pipe at 80 columns)
        raise typer.Exit(2) from None


def _logging(level: int) -> None:
    """Human lines on a terminal; one JSON object a line (with trace, span and run ids) otherwise,
    so a log aggregator can join a service's logs to its traces."""
    from rich.logging import RichHandler

    from shared.common.telemetry import json_log_handler

    handler = RichHandler(console=err, show_path=False) if err.is_terminal else json_log_handler()
    logging.basicConfig(level=level, format="%(name)s: %(message)s", datefmt="[%X]", handlers=[handler], force=True)
    from shared.common.redaction import RedactingFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    # FastStream and nats-py log every message at INFO; ours say what matters.
    for noisy in ("faststream", "repo_pilot.faststream", "nats"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _telemetry(service: str, settings: Settings) -> None:
    from shared.common.telemetry import name_process, setup_telemetry

    name_process(service)
    setup_telemetry(service, settings.otel_endpoint)


def build_request(repo: str, categories: str, threshold: float | None, engine: str | None,
                  settings: Settings, ref: str | None = None, forge: str = "local") -> PipelineRequested:
    """Validate what the user asked for, before anything is appended (exits with the message)."""
    from shared.app.requests import validate_request

    try:
        return validate_request(repo, categories, threshold, engine, settings, ref, forge)
    except ValueError as exc:
        fail(str(exc))


@app.command()
def run(
    repo: Annotated[str, typer.Argument(help="Path of a git repository, or a git URL.")],
    categories: CategoriesOpt = ",".join(CATEGORIES),
    threshold: ThresholdOpt = None,
    engine: EngineOpt = None,
    ref: Annotated[str | None, typer.Option(help="Branch, tag or sha to start from.")] = None,
    forge: Annotated[str, typer.Option(help="local (a path; default) | remote (default for a URL) | github")] = "local",
    local: Annotated[bool | None, typer.Option("--local/--no-local", help="Run the services in this process "
                     "(default: yes unless NATS_URL and DATABASE_URL point at a running cluster).")] = None,
    timeout: Annotated[float, typer.Option(help="Give up following after this many seconds.")] = 1800,
) -> None:
    """The main job: request a run and follow its beads live until it ends."""
    settings = _settings()
    request = build_request(repo, categories, threshold, engine, settings, ref, forge)
    in_process = local if local is not None else not (settings.nats_url and settings.database_url)
    _logging(logging.WARNING)
    code = arun(_run(settings, request, in_process, timeout))
    raise typer.Exit(code)


async def _run(settings: Settings, request: PipelineRequested | None, in_process: bool, timeout: float,
               start=None) -> int:
    """Request a run (or `start(store)` one: returns its id, request and what to say) and follow it."""
    from shared.app.runtime import PIPELINE_SERVICES, System

    _telemetry("repo-pilot", settings)
    services = list(PIPELINE_SERVICES) if in_process else []
    async with _run_span(), System(settings, services=services, relay=in_process, projector=in_process) as system:
        if start is None:
            run_id = await append_request(system.store, request, service="cli")
            said = f"run [bold]{run_id}[/] on {request.repo} with the [bold]{request.engine}[/] engine"
        else:
            run_id, request, said = await start(system.store)
        err.print(said)
        if not in_process and (code := await _unwatched(system.store, run_id, min(timeout, UNWATCHED_AFTER))):
            return code
        run = await render.follow(system.store, run_id, timeout, console=err)
        ended = bool(run and run["status"] in render.DONE)
        # Written here too (the analyzer also writes it), so the file exists when its path is printed.
        from shared.adapters.run_log import write_run_log

        log_path = await write_run_log(system.store, settings.runs_dir, run_id) if ended else None
        hint = failure_hint(await system.store.read_stream(run_id))
    render.print_verdict(console, run, await _beads(settings, run_id), hint=hint, log_path=log_path)
    if system.servers.embedded_nats or system.servers.embedded_postgres:
        from shared.app.embedded import left_running

        if note := left_running(settings.home):
            err.print(note, highlight=False, soft_wrap=True)
    return 0 if run and run["status"] == "COMPLETED" else 1


UNWATCHED_AFTER = 15.0  # seconds a cluster's projector may take to show a new run


async def _unwatched(store, run_id: str, within: float) -> int:
    """0 once the run shows in the read models; else 1, after one line saying what to start.

    With --no-local (or NATS_URL and DATABASE_URL set) the services and the projector are
    expected to run elsewhere; when none does, the run would never show. A request nothing took
    is ended, so its repository is not held for the sweeper (which does not run either)."""
    from shared.app.requests import end_untaken
    from shared.store.projections import get_run

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (await get_run(store, run_id))[0] is None:
        if loop.time() >= deadline:
            break
        await asyncio.sleep(0.5)
    else:
        return 0
    start = "start them (`repo-pilot up`, or `docker compose up`), or run without --no-local to run them here"
    if await end_untaken(store, run_id, f"nothing took the request within {within:.0f}s: no services or "
                         "projector run against this database and bus", hint=start):
        err.print(f"no services or projector are running against DATABASE_URL/NATS_URL: {start}. "
                  f"Run {run_id} was ended.", highlight=False, soft_wrap=True)
    else:
        err.print(f"no projector is running against DATABASE_URL, so run {run_id} cannot be followed: start one "
                  f"(`repo-pilot up`); `repo-pilot events {run_id}` shows its log meanwhile.",
                  highlight=False, soft_wrap=True)
    return 1


@contextlib.asynccontextmanager
async def _run_span():
    """The root span of a run followed from the command line: it lasts as long as the run, and
    the request (so every service's span) hangs under it."""
    from shared.common.telemetry import tracer

    with tracer().start_as_current_span("repo-pilot run"):
        yield


def failure_hint(events) -> str:
    """The hint the run's failure carries (PipelineFailed.hint), if any."""
    return next((e.data.hint for e in reversed(events) if e.type == "PipelineFailed" and e.data.hint), "")


async def _beads(settings: Settings, run_id: str) -> list[dict]:
    from shared.app.embedded import resolve_servers
    from shared.app.runtime import open_store
    from shared.store.projections import get_run

    servers = await resolve_servers(settings.nats_url, settings.database_url, settings.home)
    store = await open_store(settings, servers.database_url)
    try:
        return (await get_run(store, run_id))[1]
    finally:
        await store.close()


@app.command()
def demo(timeout: Annotated[float, typer.Option()] = 600,
         keep: Annotated[bool, typer.Option("--keep", help="Keep the demo repository (with the merged "
                                            "branch) instead of removing it at the end.")] = False) -> None:
    """Run the whole pipeline on a bundled example repository, on embedded servers."""
    import shutil
    import tempfile

    from shared.examples import make_demo_repo

    settings = _settings()
    folder = Path(tempfile.mkdtemp(prefix="repo-pilot-demo-"))
    try:
        repo = make_demo_repo(folder / "inventory")
        err.print(f"demo repository: {repo}" + ("" if keep else " (removed at the end; --keep keeps it)"))
        request = build_request(str(repo), ",".join(CATEGORIES), None, None, settings)
        _logging(logging.WARNING)
        code = arun(_run(settings, request, True, timeout))
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    raise typer.Exit(code)


@app.command()
def scaffold(
    repo: Annotated[str, typer.Argument(help="Path of a git repository.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be added; change nothing.")] = False,
    engine: EngineOpt = None,
    local: Annotated[bool | None, typer.Option("--local/--no-local", help="Run the services in this process "
                     "(default: yes unless NATS_URL and DATABASE_URL point at a running cluster).")] = None,
    timeout: Annotated[float, typer.Option()] = 1800,
) -> None:
    """Add missing best-practice files (LICENSE, SECURITY.md, CI, pre-commit…) on a branch, as one run."""
    settings = _settings()
    request = build_request(repo, "compliance,integration", None, engine, settings)
    request = request.model_copy(update={"mode": "scaffold"})
    if dry_run:
        for imp, wrote, reason in arun(_scaffold_plan(settings, request)):
            if wrote:
                console.print(f"[green]+[/] {', '.join(wrote)}  [dim]{imp.title} ({imp.rule or imp.category})[/]",
                              highlight=False, soft_wrap=True)
            else:
                console.print(f"[yellow]-[/] {', '.join(imp.files)}  [dim]{imp.title}: not written: {reason}[/]",
                              highlight=False, soft_wrap=True)
        return
    _logging(logging.WARNING)
    in_process = local if local is not None else not (settings.nats_url and settings.database_url)
    raise typer.Exit(arun(_run(settings, request, in_process, timeout)))


async def _scaffold_plan(settings: Settings, request: PipelineRequested) -> list[tuple]:
    """What scaffold would write: each improvement implemented and gated as the executor does (its
    own scratch copy at the base, the project's checks), nothing committed. (improvement, files
    written, "") or (improvement, [], why it would not be written)."""
    import tempfile

    from shared.adapters.git import git
    from shared.adapters.project_checks import gate_change
    from shared.adapters.sandbox import make_sandbox
    from shared.adapters.workspace import Workspace
    from shared.app.bootstrap import real_engine_factory
    from shared.policy.run import RunContext, scaffold_only
    from shared.ports.errors import ChangeRejectedError

    sandbox = make_sandbox("auto", isolation=settings.isolation)
    with tempfile.TemporaryDirectory(prefix="repo-pilot-scaffold-") as tmp:
        workspace = Workspace(Path(tmp))
        repo = await workspace.materialize(request.repo, request.ref)
        path = await workspace.worktree("plan", request.repo, repo.base_sha)
        engine = real_engine_factory(settings, sandbox)(RunContext("plan", request=request), [])
        analysis = await engine.analyze(path)
        plan = []
        for n, imp in enumerate(scaffold_only(await engine.suggest(path, analysis, list(request.categories)), path)):
            scratch = await workspace.worktree(f"plan{n}", request.repo, repo.base_sha)
            try:
                done = await engine.implement(scratch, imp)
                await gate_change(scratch, repo.base_sha, sandbox)
                git(scratch, "add", "--all")  # as the executor stages it: written on purpose even if ignored
                if wrote := [f for f in done.files if (scratch / f).is_file()]:
                    git(scratch, "add", "--force", "--", *wrote)
                files = git(scratch, "diff", "--cached", "--name-only", repo.base_sha).splitlines()
                plan.append((imp, files, "" if files else "the engine made no change for it"))
            except ChangeRejectedError as exc:
                plan.append((imp, [], exc.reason))
            finally:
                await workspace.remove(f"plan{n}")
        return plan


@app.command()
def up(
    services: Annotated[str | None, typer.Option(help="Comma-separated services (default: all).")] = None,
) -> None:
    """Servers, relay, projector and every service, in one process, until Ctrl-C or SIGTERM (exit 0)."""
    from shared.app.liveness import beating
    from shared.app.runtime import System, available_services

    settings = _settings()
    names = services.split(",") if services else available_services()
    _logging(logging.INFO)
    _telemetry("repo-pilot", settings)

    async def main() -> None:
        async with System(settings, services=names) as system, beating("up", system.health):
            err.print(f"[green]up[/]: NATS {redact(system.servers.nats_url)}, services {', '.join(names)}; Ctrl-C or SIGTERM stops")
            await system.wait()

    arun(main(), sigterm_exit=0)


@app.command()
def service(name: Annotated[str, typer.Argument(help="analyzer, suggester, executor, reviewer, tester, "
                                                     "merger or generator")]) -> None:
    """Run one service (what a container runs); replicas share its durable consumer."""
    from shared.app.liveness import beating
    from shared.app.runtime import System, service_routes

    try:
        service_routes(name)
    except ValueError as exc:
        fail(str(exc))
    _logging(logging.INFO)
    settings = _settings()
    _telemetry(name, settings)

    async def main() -> None:
        async with System(settings, services=[name], relay=False, projector=False) as system, \
                beating(name, system.health):
            await system.wait()

    arun(main(), sigterm_exit=0)


@app.command()
def relay(
    from_position: Annotated[int | None, typer.Option("--from-position", min=0, help="Publish the log from this "
                             "position onto the bus once (e.g. after the stream was wiped), show progress, exit.")] = None,
) -> None:
    """Run the outbox relay and the projector (several may run; one leads)."""
    from shared.app.liveness import beating
    from shared.app.runtime import System

    if from_position is not None:
        raise typer.Exit(arun(_republish(from_position)))
    _logging(logging.INFO)
    settings = _settings()
    _telemetry("relay", settings)

    async def main() -> None:
        async with System(settings) as system, beating("relay", system.health):
            await system.wait()

    arun(main(), sigterm_exit=0)


@app.command()
def alive(stale_after: Annotated[float, typer.Option(help="Seconds without a report after which a "
                                                          "process counts as hung.")] = 60.0) -> None:
    """Are this machine's (this container's) `service`, `relay` and `up` processes alive and working?
    Each reports its tasks and consumers every few seconds; exit 1 when none runs, one stopped
    reporting, or a task or consumer of one is down. What the compose health checks run."""
    from shared.app.liveness import check

    reports = check(stale_after=stale_after)
    if not reports:
        err.print("[red]FAIL[/] no `repo-pilot service`, `relay` or `up` runs here (or it is still starting)")
        raise typer.Exit(1)
    for report in reports:
        state = "; ".join(report.problems) or f"running, reported {report.age:.0f}s ago"
        console.print(f"{'[green]ok[/]  ' if report.ok else '[red]FAIL[/]'} {report.role} (pid {report.pid}): {state}",
                      highlight=False)
    raise typer.Exit(0 if all(report.ok for report in reports) else 1)


async def _republish(from_position: int) -> int:
    import time

    from shared.app.embedded import resolve_servers
    from shared.messaging.bus import connect_nats
    from shared.messaging.relay import Relay

    settings = _settings()
    servers = await resolve_servers(settings.nats_url, settings.database_url, settings.home)
    started = time.monotonic()

    def progress(sent: int, new: int, position: int, end: int) -> None:
        rate = sent / max(time.monotonic() - started, 1e-6)
        err.print(f"position {position:,}/{end:,}: {sent:,} published ({new:,} new on the stream), {rate:,.0f} events/s")

    async with _store(settings) as store:
        nc = await connect_nats(servers.nats_url, "repo-pilot-republish")
        try:
            relay_ = Relay(store, nc, stream_name=settings.stream_name, subject_prefix=settings.subject_prefix)
            sent, new = await relay_.republish(from_position, progress)
        finally:
            await nc.close()
    seconds = time.monotonic() - started
    err.print(f"republished {sent:,} event(s) from position {from_position} in {seconds:.1f} s "
              f"({sent / max(seconds, 1e-6):,.0f}/s); {new:,} were new on stream {settings.stream_name}, "
              f"{sent - new:,} it already held. Consumers skip events their tracking rows say they handled.")
    return 0


@app.command()
def gateway(
    host: Annotated[str, typer.Option(help="Address to bind; without REPO_PILOT_API_TOKEN only a "
                                           "loopback address is allowed.")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8080,
    cluster: Annotated[bool, typer.Option("--cluster", help="A cluster (repo-pilot up, or the services) runs "
                       "what is requested here; without it the gateway runs the services itself.")] = False,
    local_repos: Annotated[bool, typer.Option("--local-repos", help="Accept local repository paths "
                           "(also REPO_PILOT_GATEWAY_LOCAL_REPOS).")] = False,
) -> None:
    """The HTTP gateway and web page: create, list, follow and replay runs (OpenAPI at /docs)."""
    import uvicorn

    from shared.app.gateway import check_bind, create_app

    settings = _settings()
    settings = settings.model_copy(update={"gateway_cluster": settings.gateway_cluster or cluster,
                                           "gateway_local_repos": settings.gateway_local_repos or local_repos})
    try:
        check_bind(host, settings.api_token)
    except ValueError as exc:
        fail(str(exc))
    _logging(logging.INFO)
    _telemetry("gateway", settings)
    # Open event streams would otherwise hold Ctrl-C until every client hangs up.
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, timeout_graceful_shutdown=3)


@app.command()
def request(
    repo: Annotated[str, typer.Argument(help="Path of a git repository, or a git URL.")],
    categories: CategoriesOpt = ",".join(CATEGORIES),
    threshold: ThresholdOpt = None,
    engine: EngineOpt = None,
    ref: Annotated[str | None, typer.Option()] = None,
    forge: Annotated[str, typer.Option(help="local (a path; default) | remote (default for a URL) | github")] = "local",
) -> None:
    """Append a PipelineRequested event and print the run id."""
    settings = _settings()
    req = build_request(repo, categories, threshold, engine, settings, ref, forge)
    _telemetry("repo-pilot", settings)  # the run's trace starts here, not at the analyzer

    async def main() -> str:
        async with _store(settings) as store:
            return await append_request(store, req, service="cli")

    console.print(arun(main()))
    from shared.common.telemetry import shutdown_telemetry

    shutdown_telemetry()  # a short command: send the request's span before returning


class _store:
    """The event store on the configured (or embedded) database."""

    def __init__(self, settings: Settings):
        self.settings = settings

    async def __aenter__(self):
        from shared.app.embedded import check_postgres, ensure_postgres
        from shared.app.runtime import open_store

        dsn = self.settings.database_url or await asyncio.to_thread(ensure_postgres, self.settings.home)
        await check_postgres(dsn)
        self.store = await open_store(self.settings, dsn)
        return self.store

    async def __aexit__(self, *exc):
        await self.store.close()


def _report_skipped(store) -> None:
    """Readers skip rows that do not decode; say so instead of hiding it (or crashing)."""
    if store.skipped:
        rows = sorted(store.skipped.values())
        err.print(f"[yellow]warning:[/] skipped {len(rows)} unreadable event(s): " + "; ".join(
            f"position {r.global_position} ({r.type}): {r.reason[:120]}" for r in rows[:5])
            + (" …" if len(rows) > 5 else "") + " — see `repo-pilot health`")


@app.command()
def health(as_json: Annotated[bool, typer.Option("--json")] = False,
           window: Annotated[float, typer.Option(help="Seconds between the two lag samples; lag that "
                                                      "does not move over them fails.")] = 2.0) -> None:
    """Is anything stalled or stranded? Relay and projector positions, quarantined events,
    idle runs, the bus and its consumers. Exit code 1 when something needs attention."""
    import json

    from shared.app.health import collect
    from shared.app.runtime import available_services

    settings = _settings()

    async def main():
        async with _store(settings) as store:
            nats_url = settings.nats_url
            if nats_url is None:
                from shared.app.embedded import running_nats_url

                nats_url = running_nats_url(settings.home)
            return await collect(store, nats_url=nats_url, stream_name=settings.stream_name,
                                 services=available_services(), stall_after=settings.stall_after_seconds,
                                 window=window)

    report = arun(main())
    if as_json:
        sys.stdout.write(json.dumps({"ok": report.ok, "checks": [
            {"name": n, "ok": ok, "detail": d} for n, ok, d in report.checks], "faults": report.faults},
            default=str) + "\n")
    else:
        for name, ok, detail in report.checks:
            console.print(f"{'[green]ok[/]  ' if ok else '[red]FAIL[/]'} {name}: {detail}")
        for fault in report.faults:
            console.print(f"     quarantined position {fault['global_position']} {fault['type']} "
                          f"({fault['kind']}): {fault['reason']}")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def runs(limit: Annotated[int, typer.Option()] = 20) -> None:
    """Recent runs."""
    from shared.store.projections import Projector, list_runs

    async def main():
        async with _store(_settings()) as store:
            await Projector(store).run_once()
            _report_skipped(store)
            return await list_runs(store, limit)

    render.print_runs(console, arun(main()))


@app.command()
def beads(
    run: Annotated[str | None, typer.Option("--run", help="Only this run's beads.")] = None,
    bead_status: Annotated[str | None, typer.Option("--status", help="PENDING, RUNNING, COMPLETED, FAILED or SKIPPED.")] = None,
    category: Annotated[str | None, typer.Option("--category", help="Only improvements of this category.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Beads across runs, filtered like the gateway's GET /beads (newest run first)."""
    import json

    from shared.app.gateway import BEAD_STATUSES
    from shared.store.queries import find_beads
    from shared.store.projections import Projector

    if bead_status is not None and bead_status.upper() not in BEAD_STATUSES:
        fail(f"unknown status {bead_status!r}; choose from {', '.join(BEAD_STATUSES)}")
    if category is not None and category not in CATEGORIES:
        fail(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")

    async def main():
        async with _store(_settings()) as store:
            await Projector(store).run_once()
            return await find_beads(store, run, bead_status and bead_status.upper(), category, limit, offset)

    rows = arun(main())
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    for b in rows:
        console.print(f"{b['run_id']}  {b['title']}  [{render.STATUS_STYLE.get(b['status'], '')}]{b['status']}[/]"
                      + (f"  {b['error']}" if b["error"] else ""), highlight=False)
    if not rows:
        err.print("no beads match")


@app.command()
def status(run_id: Annotated[str, typer.Argument()],
           full: Annotated[bool, typer.Option("--full", help="Each bead's detail in full (default: "
                                              "shortened at a word).")] = False) -> None:
    """A run and its bead chain."""
    from shared.store.projections import Projector, get_run

    settings = _settings()

    async def main():
        async with _store(settings) as store:
            await Projector(store).run_once()
            _report_skipped(store)
            return await get_run(store, run_id)

    run_row, beads = arun(main())
    if run_row is None:
        fail(f"no run {run_id!r}; `repo-pilot runs` lists them", 1)
    render.print_run(console, run_row, beads, log_path=settings.runs_dir / f"{run_id}.json", full=full)


@app.command(context_settings={"allow_extra_args": False})
def events(
    run_id: Annotated[str | None, typer.Argument(
        help="Only this run's events; or `export [RUN…]` (JSON lines to stdout) or `import FILE`.")] = None,
    more: Annotated[list[str] | None, typer.Argument(help="Runs to export, or the file to import.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Print new events as they are appended; "
                      "with a RUN, until that run ends.")] = False,
    keep_following: Annotated[bool, typer.Option("--keep-following", help="With --follow RUN: go on "
                              "after the run ended.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The event log (all of it, or one run's), optionally following new events.

    Each line: position, the time the store recorded the event (UTC; it rises with the
    position), stream, version, type. `--json` prints the events as stored (their `occurred_at`
    is the writing service's clock).

    `events export [RUN…] > file.jsonl` writes the log (or those runs) as JSON lines;
    `events import file.jsonl` appends them to this installation's log (ids kept; idempotent)."""
    if run_id == "export":
        raise typer.Exit(arun(_export(more or [])))
    if run_id == "import":
        if len(more or []) != 1:
            fail("usage: repo-pilot events import FILE.jsonl")
        raise typer.Exit(arun(_import(Path(more[0]))))
    if more:
        fail(f"unexpected arguments: {' '.join(more)}")
    raise typer.Exit(arun(_events(run_id, follow, keep_following, as_json)))


async def _events(run_id: str | None, follow: bool, keep_following: bool, as_json: bool) -> int:
    from shared.app.eventlog import describe_end, ended_ok, is_terminal, read_log

    async with _store(_settings()) as store:
        if run_id and not await store.read_correlated(run_id) and not keep_following and not any(
                bad.stream_id == run_id for bad in store.skipped.values()):  # a run of unreadable rows
            fail(f"no run {run_id!r}; `repo-pilot runs` lists them", 1)
        # Times shown are the store's (when each event was recorded; they rise with the position),
        # not `occurred_at`, which each writer stamps with its own clock.
        recorded: dict = {}
        source = (store.tail(0, poll_interval=0.5, recorded=recorded) if follow
                  else read_log(store, recorded=recorded))
        async for event in source:
            at = recorded.pop(event.global_position, None)
            if run_id and run_id not in (event.stream_id, event.correlation_id):
                continue
            if as_json:
                sys.stdout.write(event.to_json() + "\n")
                sys.stdout.flush()
            else:
                render.print_event(console, event, at)
            if follow and run_id and not keep_following and is_terminal(event, run_id):
                err.print(f"{describe_end(event)} — no more events will come; --keep-following waits anyway")
                return 0 if ended_ok(event) else 1
        _report_skipped(store)
    return 0


async def _export(runs: list[str]) -> int:
    from shared.app.eventlog import export_events

    count = 0
    async with _store(_settings()) as store:
        for run in runs:
            if not await store.read_correlated(run):
                fail(f"no run {run!r} to export; `repo-pilot runs` lists them", 1)
        async for line in export_events(store, runs):
            sys.stdout.write(line + "\n")
            count += 1
        _report_skipped(store)
    sys.stdout.flush()
    err.print(f"exported {count} event(s)")
    return 0


async def _import(path: Path) -> int:
    from shared.app.eventlog import ImportRefused, import_events, parse_lines

    try:
        with path.open(encoding="utf-8") as fh:
            events = parse_lines(fh, str(path))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")
    except ImportRefused as exc:
        fail(str(exc))
    async with _store(_settings()) as store:
        try:
            result = await import_events(store, events)
        except ImportRefused as exc:
            fail(str(exc))
    err.print(f"imported {result.added} event(s) into {result.streams} stream(s); "
              f"{result.skipped} were already here")
    return 0


@app.command()
def replay(
    run_id: Annotated[str, typer.Argument(help="The run to replay.")],
    from_step: Annotated[str | None, typer.Option("--from", help="Fork: copy the run's events up to this "
                         "step (analyze, suggest, execute, test, review, merge, docs) and go on from there.")] = None,
    reuse_llm: Annotated[bool, typer.Option("--reuse-llm", help="Answer from the run's recorded model calls "
                         "(by prompt hash) instead of asking the model again.")] = False,
    local: Annotated[bool | None, typer.Option("--local/--no-local", help="Run the services in this process "
                     "(default: yes unless NATS_URL and DATABASE_URL point at a running cluster).")] = None,
    timeout: Annotated[float, typer.Option()] = 1800,
) -> None:
    """Replay a recorded run as a new run: from the start (pinned to the commit it analyzed), or
    forked from one of its steps. Changes the target already has are never merged again."""
    from shared.app.replay import ReplayRefused, replay as start_replay

    settings = _settings()

    async def start(store):
        try:
            new_run, request = await start_replay(store, run_id, from_step, reuse_llm=reuse_llm, service="cli")
        except LookupError:
            fail(f"no run {run_id!r} to replay; `repo-pilot runs` lists them")
        except ReplayRefused as exc:
            fail(str(exc))
        how = f"forked from its {from_step} step" if from_step not in (None, "analyze") else "from the start"
        answers = "recorded model answers reused" if reuse_llm else "the model is asked again"
        return new_run, request, (f"replay of {run_id} ({how}; {answers}): run [bold]{new_run}[/] on "
                                  f"{request.repo} with the [bold]{request.engine}[/] engine")

    _logging(logging.WARNING)
    in_process = local if local is not None else not (settings.nats_url and settings.database_url)
    raise typer.Exit(arun(_run(settings, None, in_process, timeout, start=start)))


@projections_app.command("rebuild")
def projections_rebuild() -> None:
    """Truncate the read models and replay the whole log from position 0."""
    from shared.store.projections import Projector

    async def main() -> int:
        async with _store(_settings()) as store:
            count = await Projector(store).rebuild()
            _report_skipped(store)
            return count

    console.print(f"rebuilt read models from {arun(main())} events")


@servers_app.callback(invoke_without_command=True)
def servers(ctx: typer.Context) -> None:
    """List the embedded servers running under REPO_PILOT_HOME (pid, address, data)."""
    if ctx.invoked_subcommand is not None:
        return
    from shared.app.embedded import running_servers

    home = _settings().home
    found = running_servers(home)
    if not found:
        console.print(f"no embedded servers run under {home}")
        return
    table = Table(title=f"embedded servers under {home}", title_justify="left")
    for col in ("server", "pid", "address", "data"):
        table.add_column(col)
    for server in found:
        table.add_row(server.name, str(server.pid), server.address, str(server.data))
    console.print(table)
    console.print("`repo-pilot servers stop` stops them")


@servers_app.command("stop")
def servers_stop() -> None:
    """Stop the embedded servers under REPO_PILOT_HOME."""
    from shared.app.embedded import stop_servers

    stopped = stop_servers(_settings().home)
    console.print("stopped " + ", ".join(stopped) if stopped else "no embedded servers were running")


def request_generation(
    task: Annotated[Path, typer.Option("--task", help="Task directory: dataset/<repo>_task/task<id>.")],
    attempts: Annotated[int, typer.Option(min=1, help="Attempts; each is one job for the generator's replicas.")] = 1,
    output: Annotated[Path, typer.Option(help="Attempt folders go here (a path the generator service can write).")]
    = Path("generated"),
    repo_path: Annotated[Path | None, typer.Option("--repo-path", help="Local base repository.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (default: OPENAI_MODEL).")] = None,
    backend: Annotated[str, typer.Option(help="Where tests run: docker, local or auto.")] = "auto",
    feature: Annotated[int | None, typer.Option(help="Collide with this existing feature's regions.")] = None,
    step_limit: Annotated[int, typer.Option(min=1)] = 30,
    cost_limit: Annotated[float, typer.Option(help="Model spend per attempt, USD.")] = 1.0,
    min_conflicts: Annotated[int, typer.Option(min=0)] = 1,
    agent_network: Annotated[bool, typer.Option("--agent-network", help="Let the agent's shell reach the "
                                                "network (tasks that must install).")] = False,
    mutants: Annotated[int, typer.Option(min=1, help="Mutants of the feature's added lines its new tests must kill.")]
    = DEFAULT_MUTANTS,
    min_mutation_score: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the mutants the new tests "
                                                      "must kill.")] = DEFAULT_MIN_MUTATION_SCORE,
    all_proofs: Annotated[bool, typer.Option("--all-proofs", help="Run every proof, not only up to the first "
                                             "failure.")] = False,
    price_in: Annotated[float | None, typer.Option(help="USD per million prompt tokens for --model.")] = None,
    price_out: Annotated[float | None, typer.Option(help="USD per million completion tokens.")] = None,
    token_limit: Annotated[int | None, typer.Option(min=1, help="Tokens per attempt (what limits a model without "
                                                    "a price).")] = None,
    local: Annotated[bool | None, typer.Option("--local/--no-local", help="Run the generator in this process "
                     "(default: yes unless NATS_URL and DATABASE_URL point at a running cluster).")] = None,
    timeout: Annotated[float, typer.Option(help="Give up following after this many seconds.")] = 3600,
) -> None:
    """The generator over the bus: append FeatureGenerationRequested per attempt and follow each job's
    beads live (prompt, agent, validate) until it ends; exit 0 when an attempt is valid. The same
    path as `generate` (`shared.app.generate.run_generation`), without its per-attempt report."""
    from shared.app.generate import build_generation_requests, model_price_setting, run_generation
    from shared.ports.errors import StepError

    settings = _settings()
    try:
        price = model_price_setting(model or settings.openai_model, price_in, price_out)
        requests = build_generation_requests(task, attempts, output, repo_path=repo_path, model=model,
                                             backend=backend, feature=feature, step_limit=step_limit,
                                             cost_limit=cost_limit, min_conflicts=min_conflicts,
                                             agent_network=agent_network, mutants=mutants,
                                             min_mutation_score=min_mutation_score, all_proofs=all_proofs,
                                             price=price, token_limit=token_limit)
    except (StepError, ValueError) as exc:
        fail(getattr(exc, "message", str(exc)) + (f" ({exc.hint})" if getattr(exc, "hint", None) else ""))
    in_process = local if local is not None else not (settings.nats_url and settings.database_url)
    _logging(logging.WARNING)
    _telemetry("repo-pilot", settings)
    raise typer.Exit(arun(run_generation(settings, requests, in_process, timeout)))


def _sole_command(argv: list[str]) -> str | None:
    """The command word when nothing but `--env-file FILE` precedes it (`--help runs` is the
    app's help, which lists every command), else None."""
    args = argv[1:]
    while args[:1] == ["--env-file"]:
        args = args[2:]
    return args[0] if args and not args[0].startswith("-") else None


def _command_name(command) -> str:
    return command.name or command.callback.__name__.lower().replace("_", "-")  # typer's default name


def _runs_as_the_cli() -> bool:
    return Path(sys.argv[0]).name in ("repo-pilot", "cli.py")


def _register_generator() -> None:
    """`generate` lives with the generator service. It ships in every build, so an ImportError
    here is a bug and stops the CLI at start instead of silently dropping the command.

    Importing it brings in the openai SDK (about 2 s of a cold start), so a `repo-pilot`
    process running another command (`runs`, `status`, …) leaves it out."""
    app.command("request-generation")(request_generation)
    if _runs_as_the_cli():
        others = {_command_name(c) for c in app.registered_commands}
        others |= {g.name for g in app.registered_groups}  # `servers stop`, `projections rebuild`
        if _sole_command(sys.argv) in others:  # `--help status` is the app's help: every command
            return
    from shared.app.generate import generate

    app.command("generate", help="Generate benchmark features that conflict with a task's features.")(generate)


def _build_only_the_invoked_command() -> None:
    """To run one command, typer builds a click command for every registered one, reading each
    signature's annotations (~20 ms for 18 commands: more than `status` spends on its queries).
    A `repo-pilot runs` or `status RUN` process builds only its own; its usage lines, help and
    errors are that command's, as before."""
    if not _runs_as_the_cli():
        return
    word = _sole_command(sys.argv)
    if chosen := [c for c in app.registered_commands if _command_name(c) == word]:
        app.registered_commands = chosen
        app.registered_groups = []


_register_generator()
_build_only_the_invoked_command()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
