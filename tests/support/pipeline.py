"""Run the whole pipeline in-process on the test's servers and wait for the run to end."""

from __future__ import annotations

import asyncio
import time

from shared.app.runtime import PIPELINE_SERVICES, System
from shared.events import PipelineRequested, make_event, new_run_stream
from shared.store.projections import Projector, get_run


async def wait_for_run(store, run_id: str, timeout: float = 240) -> tuple[dict, list[dict]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await Projector(store).run_once()
        run, beads = await get_run(store, run_id)
        if run and run["status"] in ("COMPLETED", "FAILED"):
            return run, beads
        await asyncio.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s: {await get_run(store, run_id)}")


async def run_pipeline(
    settings, request: PipelineRequested, *, timeout: float = 240, metadata: dict | None = None, **overrides
):
    """Start servers' clients, relay, projector and all six services; return (run, beads, events).
    `metadata` goes on the request event (e.g. `{"replayed_from": run_id}`, what `replay` sends)."""
    async with System(settings, services=list(PIPELINE_SERVICES), deps_overrides=overrides) as system:
        stream = new_run_stream()
        await system.store.append(stream, [make_event(request, stream, metadata=metadata)], 0)
        run, beads = await wait_for_run(system.store, stream, timeout)
        events = await system.store.read_stream(stream)
    return run, beads, events
