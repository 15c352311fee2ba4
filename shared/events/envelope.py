"""The envelope every event travels in (DESIGN section 2)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import uuid6
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from shared.events.registry import MalformedEvent, Payload, parse_payload, subject_for


def new_event_id() -> uuid.UUID:
    """UUID v7: time ordered, so ids sort roughly by creation."""
    return uuid.UUID(str(uuid6.uuid7()))


def new_run_stream() -> str:
    return f"run-{new_event_id()}"


def new_gen_stream() -> str:
    return f"gen-{new_event_id()}"


_STORED_FIELDS = frozenset({"version", "global_position"})

# `run-<uuid>` / `gen-<uuid>` in practice (new_run_stream); any short token of letters, digits
# and '-' is accepted so ids stay safe as file names and subjects: no '/', '.', '..', spaces.
STREAM_ID = re.compile(r"(run|gen)-[0-9A-Za-z][0-9A-Za-z-]{0,63}")


def check_stream_id(stream_id: object) -> str:
    """`stream_id` when it is `run-<id>` or `gen-<id>` with a path-safe id, else ValueError."""
    if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
        raise ValueError(f"stream id {str(stream_id)[:80]!r} is not run-<uuid> or gen-<uuid>")
    return stream_id


class Envelope(BaseModel):
    """One event. `version` and `global_position` are None until the store assigns them."""

    model_config = ConfigDict(frozen=True, defer_build=True)  # as Payload's (registry.py)

    event_id: uuid.UUID = Field(default_factory=new_event_id)
    type: str
    stream_id: str
    version: int | None = None
    global_position: int | None = None
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    causation_id: uuid.UUID | None = None
    correlation_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    data: SerializeAsAny[Payload]

    @field_validator("stream_id", mode="before")
    @classmethod
    def _safe_stream_id(cls, value: Any) -> str:
        return check_stream_id(value)

    @model_validator(mode="before")
    @classmethod
    def _typed_payload(cls, values: Any) -> Any:
        if isinstance(values, dict) and isinstance(values.get("data"), dict):
            type_name = values.get("type")
            if not type_name:
                raise ValueError("event has no 'type'")
            meta = values.get("metadata") or {}
            values = dict(values)
            values["data"] = parse_payload(type_name, values["data"], meta.get("schema_version"))
        return values

    def stored(self, version: int, global_position: int) -> Envelope:
        """This event as the store recorded it. `model_copy(update=...)` without its generic copy
        machinery: the append path stamps every event it writes, and this is measurably cheaper
        (`benchmarks/`). Both positions are plain ints, so no validation is skipped that matters."""
        new = Envelope.__new__(Envelope)
        fields = {**self.__dict__, "version": version, "global_position": global_position}
        object.__setattr__(new, "__dict__", fields)
        object.__setattr__(new, "__pydantic_fields_set__", self.__pydantic_fields_set__ | _STORED_FIELDS)
        object.__setattr__(new, "__pydantic_extra__", None)
        object.__setattr__(new, "__pydantic_private__", None)
        return new

    @property
    def kind(self) -> str:
        return self.stream_id.split("-", 1)[0]

    def subject(self, prefix: str = "pilot") -> str:
        return subject_for(self.type, self.stream_id, prefix)

    @property
    def traceparent(self) -> str | None:
        return self.metadata.get("traceparent")

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, raw: str | bytes) -> Envelope:
        """Parse a received event; raises MalformedEvent / UnknownEventType with a clear message."""
        import json

        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise MalformedEvent("<unknown>", f"not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise MalformedEvent("<unknown>", "event must be a JSON object")
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Envelope:
        type_name = obj.get("type")
        if not isinstance(type_name, str) or not type_name:
            raise MalformedEvent("<unknown>", "field 'type': missing or not a string")
        obj = dict(obj)
        meta = obj.get("metadata") or {}
        obj["data"] = parse_payload(type_name, obj.get("data"), meta.get("schema_version"))
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            raise MalformedEvent(type_name, exc) from None


def make_event(
    payload: Payload,
    stream_id: str,
    *,
    cause: Envelope | None = None,
    correlation_id: str | None = None,
    service: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Envelope:
    """Build an unsaved event; causation, correlation and traceparent follow `cause`."""
    meta: dict[str, Any] = {"schema_version": payload.schema_version}
    # Inside a handler's span the new event continues from that span, so steps nest in one trace.
    traceparent = _active_traceparent() or (cause.traceparent if cause is not None else None)
    if traceparent:
        meta["traceparent"] = traceparent
    if service:
        meta["service"] = service
    if metadata:
        meta.update(metadata)
    return Envelope(
        type=type(payload).__name__,
        stream_id=stream_id,
        causation_id=cause.event_id if cause else None,
        correlation_id=correlation_id or (cause.correlation_id if cause else None) or stream_id,
        metadata=meta,
        data=payload,
    )


def _active_traceparent() -> str | None:
    from shared.common.telemetry import current_traceparent

    return current_traceparent()
