"""decode_row: a stored row becomes an Envelope, or a BadRow naming the field that is wrong."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from shared.events import Envelope, StepStarted
from shared.store.rows import BadRow, decode_row
from tests.support.bus_harness import TRACEPARENT

pytestmark = pytest.mark.unit

STREAM = f"run-{uuid.uuid4()}"


def _row(**changes) -> dict:
    row = {"global_position": 7, "stream_id": STREAM, "version": 2, "event_id": uuid.uuid4(),
           "type": "StepStarted", "data": json.dumps({"step": "analyze"}),
           "metadata": json.dumps({"schema_version": 1, "traceparent": TRACEPARENT}),
           "occurred_at": datetime(2026, 1, 2, tzinfo=UTC), "causation_id": None, "correlation_id": STREAM}
    return {**row, **changes}


def test_a_good_row_is_the_envelope_a_consumer_reads_back():
    event = decode_row(_row())
    assert isinstance(event, Envelope) and event.data == StepStarted(step="analyze")
    assert (event.global_position, event.version, event.traceparent) == (7, 2, TRACEPARENT)
    assert Envelope.from_json(event.to_json()) == event


@pytest.mark.parametrize(("changes", "reason"), [
    ({"metadata": "[1, 2]"}, "metadata is a JSON array, not an object"),
    ({"metadata": "null"}, "metadata is a JSON null"),
    ({"metadata": json.dumps({"schema_version": "abc"})}, "metadata.schema_version 'abc' is not a positive"),
    ({"metadata": json.dumps({"schema_version": True})}, "is not a positive whole number"),
    ({"metadata": json.dumps({"schema_version": 9})}, "schema version 9 of StepStarted is newer than this build"),
    ({"metadata": json.dumps({"traceparent": "00-a\r\nX-Evil: 1"})}, "metadata.traceparent"),
    ({"metadata": json.dumps({"traceparent": [1]})}, "metadata.traceparent"),
    ({"metadata": "[" * 300 + "]" * 300}, "recursion limit"),
    ({"stream_id": "run-../../etc"}, "is not run-<uuid> or gen-<uuid>"),
    ({"version": 0}, "version 0: versions in a stream start at 1"),
    ({"occurred_at": None}, "occurred_at is not a time between the years 1 and 9999"),
    ({"type": "NoSuchEvent"}, "unknown event type 'NoSuchEvent'"),
    ({"data": json.dumps({"step": 5})}, "malformed StepStarted event: field 'step'"),
    ({"data": "[]"}, "malformed StepStarted event"),
])
def test_a_bad_row_is_a_reason_never_an_exception(changes, reason):
    bad = decode_row(_row(**changes))
    assert isinstance(bad, BadRow) and bad.global_position == 7
    assert reason in bad.reason and "\n" not in bad.reason


def test_what_can_still_be_read_of_a_bad_request_is_kept():
    bad = decode_row(_row(type="PipelineRequested", data=json.dumps({"repo": "/srv/x"}), metadata="[1]"))
    assert isinstance(bad, BadRow) and bad.repo == "/srv/x" and bad.occurred_at.year == 2026
    long_type = decode_row(_row(type="X" * 10_000))
    assert isinstance(long_type, BadRow) and len(long_type.type) <= 200 and len(long_type.reason) <= 500
