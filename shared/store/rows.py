"""From a stored row to an event: the one decision every reader of the log shares (issue 17).

Rows can be written around the store (an old build, a manual fix, a damaged restore), so any
field may hold anything its column allows. `decode_row` checks every field and returns either
the Envelope or a BadRow saying what is wrong; the relay, the projector and every read command
call it (through `PostgresEventStore.decode_rows`), so a row is read by all of them or
quarantined by all of them, and no row can make a reader raise and retry it forever.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

from pydantic_core import from_json

from shared.events import Envelope
from shared.events.envelope import check_stream_id
from shared.events.registry import current_version, parse_payload_json, payload_class

# The row as readers select it. `data` and `metadata` arrive as text and are parsed by
# `decode_row` (asyncpg's jsonb codec would raise inside the fetch, failing the whole page, on
# JSON nested deeper than pydantic-core's limit); `occurred_at` outside what Python's datetime
# holds (a year past 9999, BC, ±infinity) arrives as NULL for the same reason.
ROW_COLUMNS = (
    "global_position, stream_id, version, event_id, type, data::text AS data, metadata::text AS metadata, "
    "CASE WHEN occurred_at > '0001-01-02 UTC' AND occurred_at < '9999-12-30 UTC' THEN occurred_at END "
    "AS occurred_at, causation_id, correlation_id"
)

_SHOWN = 200  # characters of a bad row's stream id or type kept in its report
_REASON = 500
# A header value NATS and the W3C propagator both take: visible ASCII, no spaces or line breaks.
_TRACEPARENT = re.compile(r"[\x21-\x7e]{1,512}")


class BadRow(NamedTuple):
    """A stored row no reader can decode: skipped by every reader, quarantined and reported.

    `occurred_at` and `repo` are what could still be read of it (for a request, the failed run
    the projector shows in its place)."""

    global_position: int
    stream_id: str
    type: str
    reason: str
    occurred_at: datetime | None = None
    repo: str | None = None


def decode_row(row: Any) -> Envelope | BadRow:
    """The row (selected with ROW_COLUMNS) as an Envelope, or a BadRow naming what is wrong.

    Never raises for what a row holds; every field is checked, so the Envelope is built without
    validating it a second time."""
    try:
        return _envelope(row)
    except Exception as exc:  # noqa: BLE001 - whatever a bad row makes the checks raise is its fault
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        return BadRow(row["global_position"], str(row["stream_id"])[:_SHOWN], str(row["type"])[:_SHOWN],
                      " ".join(reason.split())[:_REASON] or type(exc).__name__, row["occurred_at"],
                      _repo(row["data"]))


def _repo(data: str) -> str | None:
    """The repository a bad row names, when its payload is an object with a string `repo`."""
    try:
        value = from_json(data)
    except ValueError:
        return None
    repo = value.get("repo", value.get("repo_path", value.get("task_dir"))) if isinstance(value, dict) else None
    return repo[:_REASON] if isinstance(repo, str) else None


def _envelope(row: Any) -> Envelope:
    type_name = row["type"]
    payload_class(type_name)  # UnknownEventType
    stream_id = check_stream_id(row["stream_id"])
    if row["version"] < 1:
        raise ValueError(f"version {row['version']}: versions in a stream start at 1")
    if row["occurred_at"] is None:
        raise ValueError("occurred_at is not a time between the years 1 and 9999")
    metadata = from_json(row["metadata"])
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata is a JSON {_json_kind(metadata)}, not an object")
    schema_version = _schema_version(type_name, metadata.get("schema_version"))
    traceparent = metadata.get("traceparent")
    if traceparent is not None and not (isinstance(traceparent, str) and _TRACEPARENT.fullmatch(traceparent)):
        raise ValueError(f"metadata.traceparent {str(traceparent)[:80]!r} is not a header value")
    return _checked({
        "event_id": row["event_id"],
        "type": type_name,
        "stream_id": stream_id,
        "version": row["version"],
        "global_position": row["global_position"],
        "occurred_at": row["occurred_at"],
        "causation_id": row["causation_id"],
        "correlation_id": row["correlation_id"],
        "metadata": metadata,
        "data": parse_payload_json(type_name, row["data"], schema_version),
    })


_ALL_FIELDS = frozenset(Envelope.model_fields)


def _checked(fields: dict[str, Any]) -> Envelope:
    """An Envelope of fields `_envelope` has checked one by one. Built like `Envelope.stored`:
    pydantic's `model_construct` costs more than decoding the payload, on every row read."""
    new = Envelope.__new__(Envelope)
    object.__setattr__(new, "__dict__", fields)
    object.__setattr__(new, "__pydantic_fields_set__", _ALL_FIELDS)
    object.__setattr__(new, "__pydantic_extra__", None)
    object.__setattr__(new, "__pydantic_private__", None)
    return new


def _schema_version(type_name: str, value: Any) -> int | None:
    """The payload's schema version from metadata: absent, or a whole number this build reads."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"metadata.schema_version {str(value)[:40]!r} is not a positive whole number")
    newest = current_version(type_name)
    if value > newest:
        raise ValueError(f"schema version {value} of {type_name} is newer than this build reads ({newest})")
    return value


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
