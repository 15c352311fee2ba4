"""Servers for a benchmark run: NATS_URL / DATABASE_URL when set, else embedded ones in a temp home."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from shared.app.embedded import ensure_nats, ensure_postgres, stop_servers


@dataclass(frozen=True)
class BenchServers:
    nats_url: str
    database_url: str
    embedded: bool


@contextlib.contextmanager
def bench_servers() -> Iterator[BenchServers]:
    nats_url, database_url = os.environ.get("NATS_URL"), os.environ.get("DATABASE_URL")
    home = None
    if not (nats_url and database_url):
        home = Path(tempfile.mkdtemp(prefix="repo-pilot-bench-"))
    try:
        yield BenchServers(
            nats_url or ensure_nats(home),
            database_url or ensure_postgres(home),
            embedded=home is not None,
        )
    finally:
        if home is not None:
            stop_servers(home)
            shutil.rmtree(home, ignore_errors=True)


def psycopg_params(dsn: str) -> dict:
    """The DSN split into what `eventsourcing.postgres.PostgresDatastore` takes (socket dirs too)."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    return {
        "dbname": (parts.path or "/postgres").lstrip("/") or "postgres",
        "host": query.get("host", [parts.hostname or "localhost"])[0],
        "port": query.get("port", [str(parts.port or 5432)])[0],
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
    }


def installed_python(env: dict[str, str], cache: Path) -> dict[str, str]:
    """`env` for timing a Python child as an installation runs it: bytecode written (to `cache`, not
    the checkout) and reused, whatever this shell says (PYTHONDONTWRITEBYTECODE=1 in some CI and
    sandbox shells made every child compile the project's modules from source, ~25-50 ms a start
    that an installed copy pays once). Warm it with one untimed start first."""
    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = str(cache)
    return out
