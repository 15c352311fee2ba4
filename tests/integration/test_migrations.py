"""Migration checksums on real Postgres: an applied migration whose file changed stops start-up."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.store import MigrationChanged, PostgresEventStore, migrate
from shared.store import postgres as pg

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(database_url, db_schema):
    c = await asyncpg.connect(database_url)
    yield c
    await c.execute(f'DROP SCHEMA IF EXISTS "{db_schema}" CASCADE')
    await c.close()


async def recorded(conn, schema) -> dict[str, str | None]:
    rows = await conn.fetch(f'SELECT name, checksum FROM "{schema}".schema_migrations ORDER BY version')
    return {r["name"]: r["checksum"] for r in rows}


async def test_every_applied_migration_records_the_checksum_of_its_file(conn, db_schema):
    await migrate(conn, db_schema)
    assert await recorded(conn, db_schema) == {name: pg.checksum(sql) for _, name, sql in pg.migrations()}


async def test_rows_applied_before_checksums_get_theirs_on_the_next_start(conn, db_schema, monkeypatch):
    shipped = pg.migrations()
    before = [m for m in shipped if "checksum" not in m[1]]
    monkeypatch.setattr(pg, "migrations", lambda: before)  # a database from before the column existed
    await migrate(conn, db_schema)
    monkeypatch.setattr(pg, "migrations", lambda: shipped)

    applied = await migrate(conn, db_schema)

    assert applied == ["0005_migration_checksums.sql"]
    assert all(await recorded(conn, db_schema)) and None not in (await recorded(conn, db_schema)).values()


async def test_an_up_to_date_schema_is_confirmed_without_the_migration_lock(conn, database_url, db_schema):
    """Every command and service opens the store: an up-to-date schema is read, not locked. A
    schema behind still waits for the lock (a migration in progress elsewhere)."""
    await migrate(conn, db_schema)
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", pg.advisory_lock_key(db_schema, "migrate"))
        assert await asyncio.wait_for(migrate(conn, db_schema), 30) == []  # would wait for the holder
        await conn.execute(f'DELETE FROM "{db_schema}".schema_migrations WHERE version = 6')
        behind = asyncio.create_task(migrate(conn, db_schema))
        await asyncio.sleep(0.5)
        assert not behind.done()  # waits for the lock, as before
        await holder.execute("SELECT pg_advisory_unlock_all()")
        assert await asyncio.wait_for(behind, 30) == ["0006_recorded_in_order.sql"]
    finally:
        await holder.close()


async def test_an_edited_applied_migration_stops_start_up_naming_the_file(
    conn, database_url, db_schema, monkeypatch
):
    await migrate(conn, db_schema)
    edited = [(v, name, sql + "\n-- edited after it shipped\n" if v == 2 else sql)
              for v, name, sql in pg.migrations()]
    monkeypatch.setattr(pg, "migrations", lambda: [*edited, (99, "0099_new.sql", "CREATE TABLE later (x int);")])

    with pytest.raises(MigrationChanged, match="migration 0002_read_models.sql was applied") as info:
        await PostgresEventStore.connect(database_url, schema=db_schema)

    assert "put the change in a new migration" in str(info.value)
    assert not await conn.fetchval(  # nothing further was applied
        "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'later'", db_schema)
    assert await conn.fetchval(f'SELECT pg_try_advisory_lock({pg.advisory_lock_key(db_schema, "migrate")})')


async def test_the_cli_stops_with_the_message_not_a_traceback(conn, database_url, db_schema, tmp_path):
    import os
    import subprocess
    import sys

    await migrate(conn, db_schema)
    await conn.execute(f"""UPDATE "{db_schema}".schema_migrations SET checksum = 'recorded-earlier' WHERE version = 1""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REPO_PILOT_"))}
    env.update(DATABASE_URL=database_url, NATS_URL="nats://127.0.0.1:1", REPO_PILOT_DB_SCHEMA=db_schema,
               REPO_PILOT_HOME=str(tmp_path / "home"), COLUMNS="300")
    proc = subprocess.run([sys.executable, "-m", "shared.app.cli", "runs"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "migration 0001_events.sql was applied" in proc.stderr and "Traceback" not in proc.stderr
