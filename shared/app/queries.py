"""Queries of the read models with filters and pages (the gateway's `/runs`, `/beads`; `repo-pilot beads`)."""

from __future__ import annotations


async def find_runs(store, status: str | None = None, limit: int = 50, offset: int = 0) -> list[dict]:
    """Runs, newest first, optionally only those in `status`."""
    rows = await store.pool.fetch(
        "SELECT * FROM runs WHERE ($1::text IS NULL OR status = $1) "
        "ORDER BY started_at DESC NULLS LAST, run_id LIMIT $2 OFFSET $3", status, limit, offset)
    return [dict(r) for r in rows]


async def find_beads(store, run: str | None = None, status: str | None = None, category: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[dict]:
    """Beads of the newest runs first, each run's in chain order; `category` keeps improvements of
    that category (steps have none)."""
    rows = await store.pool.fetch(
        "SELECT b.* FROM beads b JOIN runs r USING (run_id) "
        "WHERE ($1::text IS NULL OR b.run_id = $1) AND ($2::text IS NULL OR b.status = $2) "
        "AND ($3::text IS NULL OR b.metadata->>'category' = $3) "
        "ORDER BY r.started_at DESC NULLS LAST, b.run_id, b.seq, b.bead_id LIMIT $4 OFFSET $5",
        run, status, category, limit, offset)
    return [dict(r) for r in rows]
