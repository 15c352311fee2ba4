"""Helpers for tests of the relay and the consumer runtime: run a relay, read a stream, wait."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext

from shared.events import Envelope, PipelineRequested, make_event, new_run_stream
from shared.messaging.relay import Relay

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def requested(stream_id: str | None = None, repo: str = "/tmp/repo", **meta) -> Envelope:
    """An unsaved PipelineRequested carrying a traceparent of its own."""
    return make_event(
        PipelineRequested(repo=repo),
        stream_id or new_run_stream(),
        metadata={"traceparent": TRACEPARENT, **meta},
    )


@contextlib.asynccontextmanager
async def running_relay(store, nc, bus_names: dict[str, str], **kwargs):
    """A relay running in the background for the duration of the block."""
    stop = asyncio.Event()
    relay = Relay(store, nc, **bus_names, **kwargs)
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "") -> None:
    """Poll `check` until it is true; fail with `what` after `timeout` (a deadline, not a speed test)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


async def stream_messages(js: JetStreamContext, stream_name: str) -> list:
    """Every message stored in the stream, in stream order (raw messages with headers)."""
    info = await js.stream_info(stream_name)
    if info.state.messages == 0:
        return []
    return [
        await js.get_msg(stream_name, seq)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def stream_events(js: JetStreamContext, stream_name: str) -> list[Envelope]:
    return [Envelope.from_json(m.data) for m in await stream_messages(js, stream_name)]
