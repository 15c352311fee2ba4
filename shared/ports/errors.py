"""Errors raised through the ports: what a user can cause, as opposed to bugs (which raise anything else)."""

from __future__ import annotations


class ChangeRejectedError(Exception):
    """An improvement the engine cannot implement safely; the reason goes into ChangeRejected."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class StepError(Exception):
    """A failure the user can cause (bad repo, model junk, budget spent): recorded, not retried.

    `records` are payloads the consumer appends before StepFailed, in the same transaction (the
    model calls made before the failure: shared.ports.deps.Deps.engine puts them here)."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.records: list = []


# -- raised through the EventStore port (shared.ports.store) --


class ConcurrencyError(Exception):
    """Another writer appended to the stream first: the expected version no longer holds."""

    def __init__(self, stream_id: str, expected: int, actual: int):
        super().__init__(f"stream {stream_id}: expected version {expected}, found {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class AlreadyProcessed(Exception):
    """The tracking row (consumer, event id) exists: the event was handled before."""

    def __init__(self, consumer: str, event_id):
        super().__init__(f"{consumer} already processed event {event_id}")
        self.consumer = consumer
        self.event_id = event_id


class EventTooLarge(ValueError):
    """An event whose encoded size exceeds the store's bound (kept below the bus's max payload,
    so one event can never stall the ordered relay). Nothing of the append is written."""

    def __init__(self, stream_id: str, type_name: str, size: int, limit: int, field: str, field_size: int):
        super().__init__(
            f"{type_name} event for {stream_id} is {size:,} bytes, over the {limit:,}-byte limit "
            f"(REPO_PILOT_MAX_EVENT_BYTES); its largest field is {field!r} ({field_size:,} bytes): "
            "shorten it or keep that artifact out of the event"
        )
        self.stream_id = stream_id
        self.type_name = type_name
        self.size = size
        self.limit = limit
        self.field = field
        self.field_size = field_size
