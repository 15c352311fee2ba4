"""Running Repo Pilot in one process: servers, relay, projector and services (what `up`/`run` use).

The relay, projector and sweeper run supervised (`supervise`): an error is logged with its cause
and the task restarts after a backoff (1 s doubling to 30 s); while a task is down `health()`
says so, so a dead task is a failed health check, never silence. Consumers reconnect to NATS
forever and recreate their durable consumer when it disappears (`ServiceRuntime`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from dataclasses import dataclass, field

from shared.app.embedded import Servers, resolve_servers
from shared.common.settings import Settings
from shared.common.tasks import cancel_until_done, finish_within

log = logging.getLogger("repo_pilot.runtime")

RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
TASK_GRACE = 5.0  # seconds a task or a connection close gets on stop before it is cut


async def supervise(name: str, work, stop: asyncio.Event, state: dict[str, str],
                    backoff=RESTART_BACKOFF, healthy_after: float = 30.0) -> None:
    """Run `work(stop)` until `stop` is set, restarting it after any error or early return.

    `state[name]` is "" while the task runs and the reason while it waits to restart. The
    backoff starts over once a run lasted `healthy_after` seconds."""
    from shared.common import telemetry

    failures = 0
    while not stop.is_set():
        state[name] = ""
        began = asyncio.get_running_loop().time()
        try:
            await work(stop)
            if stop.is_set():
                return
            reason = "returned while the system runs"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".strip()
        if asyncio.get_running_loop().time() - began >= healthy_after:
            failures = 0
        delay = backoff[min(failures, len(backoff) - 1)]
        failures += 1
        state[name] = f"restarting in {delay:g}s after: {reason}"
        log.error("%s stopped (%s); restarting in %gs (restart %s)", name, reason, delay, failures)
        telemetry.default_metrics().record_task_restart(name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

PIPELINE_SERVICES = ("analyzer", "suggester", "executor", "reviewer", "tester", "merger")


def service_routes(name: str) -> list:
    """The routes a service declares in services/<name>/main.py.

    ValueError when there is no such service; any other import error (a module the service
    imports is missing or broken) propagates, so a broken service fails loudly at start."""
    module_name = f"services.{name}.main"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name not in (f"services.{name}", module_name):
            raise
        raise ValueError(f"unknown service {name!r}") from exc
    return list(module.ROUTES)


def available_services() -> list[str]:
    """Every service in `services.SERVICES`, each loaded once (a broken one raises)."""
    from services import SERVICES

    for name in SERVICES:
        service_routes(name)
    return list(SERVICES)


async def open_store(settings: Settings, database_url: str):
    from shared.store import PostgresEventStore

    return await PostgresEventStore.connect(
        database_url, schema=settings.db_schema, max_event_bytes=settings.max_event_bytes
    )


@dataclass
class System:
    """Everything one process runs; `services` may be empty (request/follow only)."""

    settings: Settings
    services: list[str] = field(default_factory=list)
    relay: bool = True
    projector: bool = True
    deps_overrides: dict = field(default_factory=dict)
    servers: Servers | None = None
    store: object | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _runtimes: list = field(default_factory=list)
    _nc: object | None = None
    _store_closed: bool = False
    task_state: dict[str, str] = field(default_factory=dict)  # task -> "" (running) or why not
    sweeper: bool = True

    async def start(self) -> System:
        """Start everything; when any part fails to start (or the start is cancelled: SIGTERM),
        what already runs is stopped before the error propagates."""
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> System:
        s = self.settings
        self.servers = await resolve_servers(s.nats_url, s.database_url, s.home)
        self.store = await open_store(s, self.servers.database_url)
        from shared.messaging.bus import connect_nats, ensure_stream

        self._nc = await connect_nats(self.servers.nats_url, "repo-pilot")
        await ensure_stream(self._nc.jetstream(), s.stream_name, s.subject_prefix)
        if self.relay:
            from shared.messaging.lag import LagPoller
            from shared.messaging.relay import Relay

            relay = Relay(self.store, self._nc, stream_name=s.stream_name, subject_prefix=s.subject_prefix)
            self._supervise("relay", relay.run)
            self._supervise("lag", LagPoller(self.store, self._nc, s.stream_name).run)  # issue 22
        if self.projector:
            from shared.store.projections import Projector

            projector = Projector(self.store)
            self._supervise("projector", lambda stop: projector.run(stop, 0.5))
            if self.sweeper:
                from shared.messaging.sweeper import Sweeper

                self._supervise("sweeper", Sweeper(self.store, s.stall_after_seconds).run)
        if self.services:
            from shared.app.bootstrap import bootstrap
            from shared.messaging.consumer import ServiceRuntime

            deps = bootstrap(s, self.store, **self.deps_overrides)
            for name in self.services:
                runtime = ServiceRuntime(
                    name, service_routes(name), self.store, deps, nats_url=self.servers.nats_url,
                    stream_name=s.stream_name, subject_prefix=s.subject_prefix,
                    max_deliver=s.max_deliver, ack_wait=s.ack_wait_seconds,
                    max_workers=s.tester_concurrency if name == "tester" else 1,
                )
                await runtime.start()
                self._runtimes.append(runtime)
        log.info("running: relay=%s projector=%s services=%s", self.relay, self.projector, self.services)
        return self

    def _supervise(self, name: str, work) -> None:
        self._tasks.append(asyncio.create_task(supervise(name, work, self._stop, self.task_state), name=name))

    def health(self) -> dict[str, str]:
        """Each task and service of this process: "" when running, else why not."""
        state = dict(self.task_state)
        for task in self._tasks:
            if task.done() and not self._stop.is_set():
                state[task.get_name()] = "ended: " + (
                    "cancelled" if task.cancelled() else repr(task.exception()))
        for runtime in self._runtimes:
            state[f"service {runtime.name}"] = runtime.healthy
        return state

    async def stop(self) -> None:
        """Stop everything in bounded time (seconds, not minutes): services stop consuming and
        release or finish the message in hand (`ServiceRuntime.stop`), the relay, projector and
        sweeper get `TASK_GRACE` seconds to return and are then cancelled until they end, and no
        close of a connection may hang the process. Safe to call twice."""
        for runtime in self._runtimes:
            runtime.stopping = True  # from now on a failing step is an interruption, not an error
        self._stop.set()
        runtimes, self._runtimes = self._runtimes, []
        results = await asyncio.gather(*(runtime.stop() for runtime in runtimes), return_exceptions=True)
        for runtime, result in zip(runtimes, results, strict=True):
            if isinstance(result, Exception):
                log.warning("service %s: stopping failed: %s", runtime.name, result)
        tasks, self._tasks = self._tasks, []
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=TASK_GRACE)
            await cancel_until_done(*running, give_up_after=TASK_GRACE)
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await finish_within(nc.close(), TASK_GRACE, "closing the NATS connection")
        if self.store is not None and not self._store_closed:
            self._store_closed = True
            await finish_within(self.store.close(), TASK_GRACE, "closing the event store")

    async def __aenter__(self) -> System:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def wait(self) -> None:
        await self._stop.wait()
