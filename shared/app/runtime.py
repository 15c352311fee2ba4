"""Running Repo Pilot in one process: servers, relay, projector and services (what `up`/`run` use)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from dataclasses import dataclass, field

from shared.app.embedded import Servers, resolve_servers
from shared.common.settings import Settings

log = logging.getLogger("repo_pilot.runtime")

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

    return await PostgresEventStore.connect(database_url, schema=settings.db_schema)


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

    async def start(self) -> System:
        s = self.settings
        self.servers = await resolve_servers(s.nats_url, s.database_url, s.home)
        self.store = await open_store(s, self.servers.database_url)
        from shared.messaging.bus import connect_nats, ensure_stream

        self._nc = await connect_nats(self.servers.nats_url, "repo-pilot")
        await ensure_stream(self._nc.jetstream(), s.stream_name, s.subject_prefix)
        if self.relay:
            from shared.messaging.relay import Relay

            relay = Relay(self.store, self._nc, stream_name=s.stream_name, subject_prefix=s.subject_prefix)
            self._tasks.append(asyncio.create_task(relay.run(self._stop), name="relay"))
        if self.projector:
            from shared.store.projections import Projector

            self._tasks.append(asyncio.create_task(Projector(self.store).run(self._stop, 0.5), name="projector"))
        if self.services:
            from shared.app.bootstrap import bootstrap
            from shared.messaging.consumer import ServiceRuntime

            deps = bootstrap(s, self.store, **self.deps_overrides)
            for name in self.services:
                runtime = ServiceRuntime(
                    name, service_routes(name), self.store, deps, nats_url=self.servers.nats_url,
                    stream_name=s.stream_name, subject_prefix=s.subject_prefix,
                    max_deliver=s.max_deliver, ack_wait=s.ack_wait_seconds,
                )
                await runtime.start()
                self._runtimes.append(runtime)
        log.info("running: relay=%s projector=%s services=%s", self.relay, self.projector, self.services)
        return self

    async def stop(self) -> None:
        self._stop.set()
        for runtime in self._runtimes:
            with contextlib.suppress(Exception):
                await runtime.stop()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        if self.store is not None:
            await self.store.close()

    async def __aenter__(self) -> System:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def wait(self) -> None:
        await self._stop.wait()
