"""The EventStore port: what services and the consumer runtime ask of the event store.

`shared.store.postgres.PostgresEventStore` is the real one; `tests/support/fakes.py` holds an
in-memory one. Both pass the same contract suite (tests/contract/test_event_store_contract.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from shared.events import Envelope

Tracking = tuple[str, uuid.UUID]  # (consumer, event id): "this consumer handled this event"


@runtime_checkable
class EventStore(Protocol):
    async def append(
        self,
        stream_id: str,
        events: Sequence[Envelope],
        expected_version: int | None = None,
        *,
        tracking: Tracking | None = None,
    ) -> list[Envelope]:
        """Append to one stream; returns the events with version and global position (errors from
        shared.ports.errors).

        `expected_version` (0 = the stream must not exist) raises ConcurrencyError when another
        writer got there first; `tracking` raises AlreadyProcessed when its row exists, and then
        nothing is appended."""
        ...

    async def append_streams(
        self, groups: Sequence[tuple[str, Sequence[Envelope]]], *, tracking: Tracking
    ) -> list[Envelope]:
        """Append to several streams and write the tracking row, all or nothing (one transaction);
        raises AlreadyProcessed, appending nothing, when the row exists."""
        ...

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[Envelope]: ...

    async def stream_version(self, stream_id: str) -> int: ...

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Envelope]:
        """Events with global position > `after_position`, in order, at most `limit`."""
        ...

    async def last_position(self) -> int: ...

    async def ping(self) -> None:
        """Return when the store answers a trivial query; raise when it does not (an outage)."""
        ...

    async def is_processed(self, consumer: str, event_id: uuid.UUID) -> bool: ...

    async def get_event(self, event_id: uuid.UUID) -> Envelope | None:
        """The stored event with this id, or None (consumers check what the bus delivers against it)."""
        ...

    async def get_event_for(self, consumer: str, event_id: uuid.UUID) -> tuple[Envelope | None, bool]:
        """`get_event` and `is_processed(consumer, …)` at once (one round trip per delivery)."""
        ...
