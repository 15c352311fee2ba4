"""Helpers for projection tests: append payloads to a stream, snapshot the read models."""

from __future__ import annotations

from shared.events import make_event
from shared.store.projections import dumps


async def append(store, stream, *payloads):
    await store.append(stream, [make_event(p, stream) for p in payloads])


async def snapshot(store) -> tuple[str, str]:
    """Every row of `runs` and `beads`, serialised, for exact comparisons."""
    runs = await store.pool.fetch("SELECT * FROM runs ORDER BY run_id")
    beads = await store.pool.fetch("SELECT * FROM beads ORDER BY run_id, bead_id")
    return dumps([dict(r) for r in runs]), dumps([dict(b) for b in beads])
