"""A Repo Pilot installation made of real OS processes, for the fault suite (issue 13).

`Cluster` owns private servers (a nats-server and, when asked, a PostgreSQL of its own under a
temp home, so killing or restarting them never touches the machine's shared services) and any
number of `repo-pilot up` processes (each: a relay that leads or stands by, the projector, the
sweeper and every pipeline service; two of them = two replicas of everything). Runs are requested
through the store; `outcome` counts what ended, what is stuck and what was duplicated.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from shared.app.embedded import ensure_nats, ensure_postgres, stop_servers
from shared.events import PipelineRequested, make_event, new_run_stream
from shared.store import PostgresEventStore
from shared.store.projections import Projector
from tests.conftest import make_git_repo

# Repeated ends of one thing a run does once are duplicates; StepStarted repeats by design
# (one per attempt) and model calls are recorded per attempt.
ONCE_PER_RUN = ("RepoAnalyzed", "ImprovementsSuggested", "ChangesCommitted", "ChangesReviewed",
                "TestsCompleted", "MergeCompleted", "DocsUpdated", "PipelineCompleted", "PipelineFailed")

TARGET = {
    "calc.py": ("import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n\n\n"
                "def add(a, b):\n    return a + b\n"),
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
}


def fault_size() -> str:
    """`ci` (default: small loads that fit a CI run) or `full` (REPO_PILOT_FAULTS=full, `make faults`)."""
    return "full" if os.environ.get("REPO_PILOT_FAULTS") == "full" else "ci"


@dataclass
class Outcome:
    started: int
    completed: int
    failed: int
    stuck: int
    duplicates: int
    seconds: float
    recovery_seconds: float | None = None
    errors: list[str] = field(default_factory=list)

    def line(self, scenario: str) -> str:
        return json.dumps({"scenario": scenario, "size": fault_size(), **self.__dict__})


class Cluster:
    def __init__(self, home: Path, *, private_postgres: bool = False, database_url: str | None = None,
                 stall_after: float = 600, ack_wait: float = 20, max_deliver: int = 5):
        self.home = home
        self.schema = "faults"
        self.private_postgres = private_postgres
        self.database_url = database_url
        self.env_extra = {"REPO_PILOT_STALL_AFTER": str(stall_after), "REPO_PILOT_ACK_WAIT": str(ack_wait),
                          "REPO_PILOT_MAX_DELIVER": str(max_deliver)}
        self.procs: list[subprocess.Popen] = []
        self.store: PostgresEventStore | None = None
        self.nats_url = ""
        self.runs: list[str] = []

    # -- servers --

    async def start(self) -> Cluster:
        self.home.mkdir(parents=True, exist_ok=True)
        self.nats_url = await asyncio.to_thread(ensure_nats, self.home / "servers")
        if self.private_postgres or not self.database_url:
            self.database_url = await asyncio.to_thread(ensure_postgres, self.home / "servers")
        else:
            self.schema = f"faults_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        self.store = await PostgresEventStore.connect(self.database_url, self.schema)
        return self

    async def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if self.store is not None:
            await self.store.close()
        if not (self.private_postgres or self.database_url is None) and self.schema.startswith("faults_"):
            conn = await asyncpg.connect(self.database_url)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            await conn.close()
        await asyncio.to_thread(stop_servers, self.home / "servers")

    def nats_pid(self) -> int:
        return json.loads((self.home / "servers" / "nats" / "server.json").read_text())["pid"]

    async def restart_nats(self, down_for: float = 0.0) -> None:
        """SIGKILL the nats-server and start it again on the same port and store directory."""
        state = json.loads((self.home / "servers" / "nats" / "server.json").read_text())
        os.kill(state["pid"], signal.SIGKILL)
        await asyncio.sleep(down_for)
        base = self.home / "servers" / "nats"
        from shared.app.embedded import nats_binary

        proc = subprocess.Popen([nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(state["port"]),
                                 "-sd", str(base / "jetstream"), "-l", str(base / "nats.log")],
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (base / "server.json").write_text(json.dumps({"pid": proc.pid, "port": state["port"]}))

    async def stop_postgres(self) -> None:
        from pgserver._commands import pg_ctl

        data = self.home / "servers" / "postgres"
        await asyncio.to_thread(pg_ctl, ["-w", "stop", "-m", "immediate"], pgdata=data, user=_owner(data))

    async def start_postgres(self) -> None:
        """Start the private PostgreSQL again exactly as pgserver does (in a fresh process: pgserver
        caches its handle per process and would not notice the server is gone)."""
        data = self.home / "servers" / "postgres"
        code = "import sys, pgserver; pgserver.get_server(sys.argv[1], cleanup_mode=None)"
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, str(data))
        assert await proc.wait() == 0, "the private PostgreSQL did not start again"

    # -- Repo Pilot processes --

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REPO_PILOT_", "NATS_URL",
                                                                       "DATABASE_URL"))}
        env.update(NATS_URL=self.nats_url, DATABASE_URL=self.database_url, REPO_PILOT_DB_SCHEMA=self.schema,
                   REPO_PILOT_HOME=str(self.home / "data"), **self.env_extra)
        return env

    def up(self, name: str = "up", services: str = "analyzer,suggester,executor,reviewer,tester,merger"
           ) -> subprocess.Popen:
        """One more `repo-pilot up` process (relay + projector + sweeper + the pipeline services)."""
        path = self.home / f"{name}-{len(self.procs)}.log"
        log = path.open("w")  # lives as long as the process
        proc = subprocess.Popen([sys.executable, "-m", "shared.app.cli", "up", "--services", services],
                                env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = path
        self.procs.append(proc)
        return proc

    @staticmethod
    async def wait_log(proc: subprocess.Popen, text: str, timeout: float = 60) -> None:
        """Wait until the process's log says `text` (e.g. that its relay leads)."""
        deadline = time.monotonic() + timeout
        while text not in proc.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"no {text!r} in {proc.log_path}:\n{proc.log_path.read_text()[-3000:]}")
            await asyncio.sleep(0.2)

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    # -- runs --

    async def request_runs(self, n: int, tmp: Path, categories: tuple[str, ...] = ("security",)) -> list[str]:
        """`n` runs, each on its own small repository (concurrent runs on one target are issue 8's)."""
        ids = []
        for _ in range(n):
            repo = make_git_repo(tmp / f"target-{len(self.runs)}", TARGET)
            stream = new_run_stream()
            request = PipelineRequested(repo=str(repo), categories=list(categories), engine="rules")
            await self._retrying(lambda s=stream, r=request: self.store.append(s, [make_event(r, s)], 0))
            self.runs.append(stream)
            ids.append(stream)
        return ids

    async def wait_until_ended(self, timeout: float) -> Outcome:
        """Wait until every requested run has ended (or `timeout`), then count."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            outcome = await self.outcome(time.monotonic() - began)
            if outcome.stuck == 0:
                return outcome
            await asyncio.sleep(1.0)
        return await self.outcome(time.monotonic() - began)

    async def outcome(self, seconds: float) -> Outcome:
        rows = await self._retrying(lambda: self.store.pool.fetch(
            "SELECT stream_id, type, count(*) AS n FROM events WHERE stream_id = ANY($1::text[]) "
            "AND type = ANY($2::text[]) GROUP BY stream_id, type", self.runs, list(ONCE_PER_RUN)))
        counts = {(r["stream_id"], r["type"]): r["n"] for r in rows}
        completed = sum(1 for r in self.runs if counts.get((r, "PipelineCompleted")))
        failed = sum(1 for r in self.runs if counts.get((r, "PipelineFailed")) and not counts.get((r, "PipelineCompleted")))
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        errors = [r["error"] for r in await self._retrying(lambda: self.store.pool.fetch(
            "SELECT data->>'error' AS error FROM events WHERE type = 'PipelineFailed' "
            "AND stream_id = ANY($1::text[])", self.runs))]
        return Outcome(len(self.runs), completed, failed, len(self.runs) - completed - failed, duplicates,
                       round(seconds, 1), errors=errors)

    async def wait_for(self, sql: str, *args, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self._retrying(lambda: self.store.pool.fetchval(sql, *args)):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for: {sql}")

    async def project(self) -> None:
        await Projector(self.store).run_once()

    async def _retrying(self, call, timeout: float = 180):
        """The harness itself rides out a database outage it caused."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await call()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)


def _owner(data: Path) -> str | None:
    from shared.app.embedded import _pg_owner

    return _pg_owner(data)
