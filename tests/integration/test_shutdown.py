"""Every process stops: a service runtime's stop returns however its consumer watch is caught
(the NATS client's `close()` swallows a cancellation), against real NATS JetStream and Postgres."""

from __future__ import annotations

import asyncio
import random

import pytest

from shared.messaging.consumer import Route, ServiceRuntime

pytestmark = pytest.mark.integration

ITERATIONS = 60
HANG = 5.0  # seconds: far beyond any stop; only there so a hang fails instead of blocking the run


async def nothing(event, deps) -> list:
    return []


async def test_stop_returns_wherever_the_consumer_watch_is_caught(store, nats_url, bus_names):
    """The watch loops without pause (open a NATS connection, ask for the consumer, close), so
    stopping at a random moment often lands inside the client's `close()`."""
    rng = random.Random(17)
    hung = 0
    for _round in range(ITERATIONS):
        runtime = ServiceRuntime("analyzer", [Route("PipelineRequested", nothing, step="analyze")],
                                 store, None, nats_url=nats_url, **bus_names)
        runtime.watch_interval = 0
        await runtime.start()
        await asyncio.sleep(rng.uniform(0, 0.05))
        stopping = asyncio.create_task(runtime.stop())
        done, _ = await asyncio.wait({stopping}, timeout=HANG)
        if not done:
            hung += 1
            watch = runtime._watch
            while not (stopping.done() and (watch is None or watch.done())):  # free the loop for the next round
                stopping.cancel()
                if watch is not None:
                    watch.cancel()
                await asyncio.sleep(0.1)
        else:
            stopping.result()
        assert runtime.healthy == "stopped"
    assert hung == 0, f"stop() hung in {hung} of {ITERATIONS} rounds"
