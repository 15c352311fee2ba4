"""NATS JetStream plumbing shared by the relay and the consumer runtime (DESIGN sections 3 and 8).

The bus only carries events; Postgres is the source of truth. One stream (`PILOT`) holds every
subject under the prefix (`pilot.>`); subjects are derived from event types by
`shared.events.registry.subject_for`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError

from shared.events.registry import stream_kind, subject_for

log = logging.getLogger("repo_pilot.bus")

# Dedupe window for `Nats-Msg-Id` (the server default, stated so nobody wonders).
DUPLICATE_WINDOW_SECONDS = 120.0


def connection_callbacks(name: str, client: Callable[[], Client | None]) -> dict[str, Any]:
    """Callbacks for nats-py / FastStream that say in the log what the connection is doing.

    `client` returns the connection (None once its owner shut it down), so a close we asked for
    is not reported as a lost connection.
    """

    async def disconnected() -> None:
        nc = client()
        if nc is None or nc.is_closed or nc.is_draining:
            return
        log.warning("%s: NATS connection lost, reconnecting forever…", name)

    async def reconnected() -> None:
        log.warning("%s: NATS connection re-established", name)

    async def error(exc: Exception) -> None:
        # Reconnect attempts surface here too; they are expected while the server is down.
        log.warning("%s: NATS error: %s", name, exc or type(exc).__name__)

    async def closed() -> None:
        log.debug("%s: NATS connection closed", name)

    return {
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
        "closed_cb": closed,
    }


async def connect_nats(url: str, name: str) -> Client:
    """Connect to NATS and never give up reconnecting (nats-py stops after ~2 minutes by default)."""
    nc = Client()
    await nc.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        **connection_callbacks(name, lambda: nc),
    )
    return nc


# The stream is a carrier, not the record (Postgres is): it keeps a week or 2 GiB, whichever is
# reached first, oldest dropped. Both are far above a run's life (the sweeper ends a silent run
# after REPO_PILOT_STALL_AFTER, 2 h) and keep a disk from filling with an unbounded stream.
STREAM_MAX_AGE_SECONDS = 7 * 24 * 3600
STREAM_MAX_BYTES = 2 * 1024**3


def stream_config(stream_name: str = "PILOT", subject_prefix: str = "pilot") -> StreamConfig:
    return StreamConfig(
        name=stream_name,
        subjects=[f"{subject_prefix}.>"],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=STREAM_MAX_AGE_SECONDS,
        max_bytes=STREAM_MAX_BYTES,
    )


async def ensure_stream(
    js: JetStreamContext, stream_name: str = "PILOT", subject_prefix: str = "pilot"
) -> StreamInfo:
    """Create the stream holding `<prefix>.>`, or bring an existing one to this config."""
    config = stream_config(stream_name, subject_prefix)
    try:
        # Idempotent when the stream exists with the same config.
        return await js.add_stream(config)
    except BadRequestError:
        # "stream name already in use with a different configuration": update it in place.
        return await js.update_stream(config)


def subjects_for(types: list[str], prefix: str = "pilot") -> list[str]:
    """Subjects carrying the given event types: `<prefix>.<kind>.<snake>`, kind `*` for "any".

    Raises UnknownEventType for a type that is not registered. Order is kept, duplicates dropped.
    """
    subjects: list[str] = []
    for type_name in types:
        kind = stream_kind(type_name)
        subject = subject_for(type_name, f"{'*' if kind == 'any' else kind}-", prefix)
        if subject not in subjects:
            subjects.append(subject)
    return subjects
