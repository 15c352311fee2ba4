"""Moving and watching the event log: when a run has ended, export to JSON lines, import them.

Export writes one stored event per line (`Envelope.to_json()`: ids, stream, version, global
position, metadata, payload), in global order. Import appends them to another store keeping
every event id, stream and version; an event already there (same id, same stream and version)
is skipped, so importing a file twice adds nothing; anything else that would contradict the log
(the version held by another event, an id stored elsewhere, a gap) refuses the whole file
before anything is written. Imported events are history, not requests: each service that
routes an imported event gets a tracking row for it in the same transaction, so the importing
installation's services skip them when the relay publishes them (an imported run that had not
ended does not start running there).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.events import STREAM_ENDS, Envelope
from shared.events.registry import MalformedEvent, UnknownEventType
from shared.store.queries import stored_positions, track

TERMINAL_TYPES = frozenset(STREAM_ENDS)


def is_terminal(event: Envelope, run_id: str) -> bool:
    """Whether `event` ends the run (or generation job) `run_id`."""
    return event.stream_id == run_id and event.type in TERMINAL_TYPES


def describe_end(event: Envelope) -> str:
    """How a run ended, in one line (for `events --follow`)."""
    d = event.data
    if event.type == "PipelineCompleted":
        return f"run {event.stream_id} completed: {d.verdict.replace('_', ' ')}" + (f" ({d.summary})" if d.summary else "")
    if event.type == "PipelineFailed":
        return f"run {event.stream_id} failed at {d.step}: {d.error}"
    return f"job {event.stream_id} ended: feature {'valid' if d.valid else 'not valid'}"


def ended_ok(event: Envelope) -> bool:
    return event.type == "PipelineCompleted" or (event.type == "FeatureValidated" and bool(event.data.valid))


async def read_log(store, after: int = 0, batch: int = 1000,
                   recorded: dict[int, datetime] | None = None) -> AsyncIterator[Envelope]:
    """Every readable event after position `after`, in order (undecodable rows are skipped and
    recorded in `store.skipped`); `recorded` gets the store's time of each (`read_page`)."""
    position = after
    while True:
        page, end = await store.read_page(position, batch, recorded=recorded)
        if end == position:
            return
        for event in page:
            yield event
        position = end


async def export_events(store, runs: Sequence[str] = ()) -> AsyncIterator[str]:
    """JSON lines of the whole log, or of the runs named (their streams and correlated events)."""
    wanted = set(runs)
    async for event in read_log(store):
        if not wanted or event.stream_id in wanted or event.correlation_id in wanted:
            yield event.to_json()


class ImportRefused(ValueError):
    """The file contradicts the log (or is not an export): nothing was written."""


@dataclass
class ImportResult:
    added: int
    skipped: int  # already in the log
    streams: int


def parse_lines(lines: Iterable[str], source: str = "input") -> list[Envelope]:
    """The events of an export file, or ImportRefused naming the first bad line."""
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = Envelope.from_json(line)
        except (MalformedEvent, UnknownEventType, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ImportRefused(f"{source}, line {number}: not an exported event: {first}") from None
        if event.version is None or event.version < 1:
            raise ImportRefused(f"{source}, line {number}: event {event.event_id} has no stream version")
        events.append(event)
    return events


def plan_import(events: Sequence[Envelope], stored_versions: dict[str, dict[int, uuid.UUID]],
                stored_ids: dict[uuid.UUID, tuple[str, int]]) -> list[Envelope]:
    """The events to append (in file order), or ImportRefused saying what contradicts the log.

    `stored_versions`: stream -> version -> event id already in the log; `stored_ids`: event id ->
    (stream, version) already in the log. Pure, so every rule is unit-testable."""
    seen: dict[uuid.UUID, tuple[str, int]] = {}
    next_version = {s: max(v, default=0) + 1 for s, v in stored_versions.items()}
    todo = []
    for e in events:
        where = (e.stream_id, e.version)
        if seen.setdefault(e.event_id, where) != where:
            raise ImportRefused(f"event {e.event_id} appears twice in the file, at {seen[e.event_id]} and {where}")
        held = stored_versions.get(e.stream_id, {}).get(e.version)
        if held is not None:
            if held != e.event_id:
                raise ImportRefused(
                    f"conflicting version: {e.stream_id} version {e.version} is event {held} here, but "
                    f"{e.event_id} ({e.type}) in the file; the two logs diverged, nothing was imported")
            continue
        if e.event_id in stored_ids:
            stream, version = stored_ids[e.event_id]
            raise ImportRefused(f"event {e.event_id} is already stored as {stream} version {version}, "
                                f"but the file has it as {e.stream_id} version {e.version}; nothing was imported")
        expected = next_version.get(e.stream_id, 1)
        if e.version != expected:
            raise ImportRefused(f"{e.stream_id}: the file jumps to version {e.version} where version {expected} "
                                "comes next (an export of part of a stream?); nothing was imported")
        next_version[e.stream_id] = expected + 1
        todo.append(e)
    return todo


def routed_by() -> dict[str, list[str]]:
    """Event type -> the services that handle it (their tracking rows say "handled")."""
    from shared.app.runtime import available_services, service_routes

    routes: dict[str, list[str]] = {}
    for name in available_services():
        for route in service_routes(name):
            routes.setdefault(route.event_type, []).append(name)
    return routes


async def import_events(store, events: Sequence[Envelope]) -> ImportResult:
    """Append what the log lacks of `events` (see the module docstring); ImportRefused, writing
    nothing, when the file contradicts the log."""
    streams = sorted({e.stream_id for e in events})
    ids = [e.event_id for e in events]
    async with store.pool.acquire() as conn, conn.transaction():
        stored_versions, stored_ids = await stored_positions(conn, streams, ids)
        todo = plan_import(events, stored_versions, stored_ids)
        await append_history(store, conn, todo)
    return ImportResult(added=len(todo), skipped=len(events) - len(todo), streams=len(streams))


async def append_history(store, conn, events: Sequence[Envelope], *, except_for: frozenset = frozenset()) -> None:
    """Append `events` (in order, each at the version it carries) with tracking rows for every
    service that routes them, inside the caller's transaction: the services treat them as handled.
    `except_for` holds event ids left untracked (the one a fork resumes from)."""
    routes = routed_by()
    i = 0
    while i < len(events):
        j = i
        while j < len(events) and events[j].stream_id == events[i].stream_id:
            j += 1
        group = events[i:j]
        await store.append_in(conn, group[0].stream_id, group, group[0].version - 1)
        i = j
    await track(conn, [(service, e.event_id) for e in events if e.event_id not in except_for
                       for service in routes.get(e.type, [])])
