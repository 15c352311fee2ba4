"""Every malformed row is quarantined, whatever field is wrong (issue 17).

Hypothesis writes rows straight into the `events` table of a scratch schema (as an old build, a
manual fix or a damaged restore would), between two good requests, and drives every reader of the
log over them: a real relay publishing to real NATS JetStream, the projector catching up and
rebuilding, and the queries behind `runs`, `status`, `events` and `health`. Nothing may raise,
every row is either read by all of them or quarantined by all of them, and the good request after
the bad rows is still published and projected."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.app.health import collect
from shared.events import Envelope, PipelineRequested, make_event, new_run_stream
from shared.events.envelope import STREAM_ID
from shared.messaging.relay import Relay
from shared.store.projections import Projector, get_run, list_runs
from shared.store.queries import unfinished_runs
from tests.conftest import scratch_store
from tests.integration.test_cli import cli
from tests.support.bus_harness import TRACEPARENT, eventually
from tests.support.read_models import snapshot

pytestmark = pytest.mark.integration

REQUEST_TYPES = ("PipelineRequested", "FeatureGenerationRequested")
ENDS = ("PipelineCompleted", "PipelineFailed")

# Payloads that validate, one per type a run's log holds; the fuzz starts from these and breaks them.
VALID = {
    "PipelineRequested": {"repo": "/srv/fuzzed", "categories": ["security"]},
    "FeatureGenerationRequested": {"task_dir": "/t", "output_dir": "/o"},
    "StepStarted": {"step": "analyze", "attempt": 1},
    "StepCompleted": {"step": "analyze", "summary": "done", "metadata": {"files": 3}},
    "StepFailed": {"step": "analyze", "error": "boom"},
    "PipelineFailed": {"step": "analyze", "error": "boom"},
    "PipelineCompleted": {"verdict": "merged"},
    "LlmCallRecorded": {"purpose": "p", "model": "m", "prompt_hash": "h", "prompt_tokens": 5},
    "ChangesReviewed": {"overall": 8.0, "passed": True},
}

_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
# Names that collide with what readers do with a payload's or metadata's keys.
_keys = st.sampled_from(["summary", "error", "bead", "status", "at", "schema_version", "traceparent",
                         "repo", "step", "metadata", "x"]) | _text


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def _data(draw, type_name: str) -> str:
    """A payload as JSON text: valid, valid with one field broken or added, or anything at all."""
    valid = dict(VALID.get(type_name, {"x": 1}))
    kind = draw(st.sampled_from(["valid", "field", "extra", "any", "deep"]))
    if kind == "field":
        valid[draw(st.sampled_from(sorted(valid)))] = draw(_json)
    elif kind == "extra":
        if type_name == "StepCompleted":
            valid["metadata"] = draw(st.dictionaries(_keys, _json, max_size=3))
        else:
            valid[draw(_keys)] = draw(_json)
    elif kind == "any":
        return json.dumps(draw(_json))
    elif kind == "deep":
        return json.dumps({**valid, "metadata": json.loads(_deep(draw(st.integers(100, 600))))})
    return json.dumps(valid)


_schema_version = st.none() | st.integers(-2, 3) | st.integers() | st.booleans() | _text | _json
_traceparent = st.just(TRACEPARENT) | _text | _json | st.just("00-abc\r\nX-Injected: 1")
_metadata = st.one_of(
    st.fixed_dictionaries({"schema_version": st.just(1)}, optional={"traceparent": st.just(TRACEPARENT)}),
    st.fixed_dictionaries({}, optional={"schema_version": _schema_version, "traceparent": _traceparent,
                                        "service": _json}).map(json.dumps),
    _json.map(json.dumps),  # a list, a number, a string, null
    st.integers(100, 600).map(_deep).map(lambda deep: json.dumps({"schema_version": 1, "x": json.loads(deep)})),
).map(lambda m: m if isinstance(m, str) else json.dumps(m))
_occurred = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
    .map(datetime.isoformat),
    st.sampled_from(["infinity", "-infinity", "20000-01-01", "4713-01-01 BC", "0001-01-01 00:00:00+00"]),
)


@st.composite
def bad_rows(draw) -> list[dict]:
    rows = []
    for _ in range(draw(st.integers(1, 3))):
        type_name = draw(st.sampled_from(sorted(VALID)) | _text | st.just("NoSuchEvent"))
        stream = draw(st.sampled_from(["fresh", "before", "junk"]))
        rows.append({
            "type": type_name,
            "stream": stream,
            "junk_stream": draw(_text | st.sampled_from(["run-../../etc", "run-" + "x" * 80, "gen-", "run-a b"])),
            "version": draw(st.integers(-2, 3)),
            "data": draw(_data(type_name)),
            "metadata": draw(_metadata),
            "occurred_at": draw(_occurred),
            "correlation": draw(st.none() | _text),
            "causation": draw(st.none() | st.uuids()),
        })
    return rows


async def _insert(store, row: dict, before: Envelope) -> int | None:
    """One row written behind the store's back; None when it collides with an existing one."""
    if row["stream"] == "fresh":
        stream, version = new_run_stream(), row["version"]
    elif row["stream"] == "before":
        stream, version = before.stream_id, await store.stream_version(before.stream_id) + 1
    else:
        stream, version = row["junk_stream"] + uuid.uuid4().hex[:4], row["version"]
    return await store.pool.fetchval(
        "INSERT INTO events (stream_id, version, event_id, type, data, metadata, occurred_at, "
        "causation_id, correlation_id) VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, "
        "$7::text::timestamptz, $8, $9) ON CONFLICT DO NOTHING RETURNING global_position",
        stream, version, uuid.uuid4(), row["type"], row["data"], row["metadata"], row["occurred_at"],
        row["causation"], row["correlation"])


async def _request(store, n: int) -> Envelope:
    stream = new_run_stream()
    event = make_event(PipelineRequested(repo=f"/srv/good-{n}"), stream, metadata={"traceparent": TRACEPARENT})
    return (await store.append(stream, [event], 0))[0]


class _Log:
    """The scratch log, its relay and what has reached the bus so far."""

    def __init__(self, store, js, stream_name: str):
        self.store, self.js, self.stream_name = store, js, stream_name
        self.seen_seq = 0
        self.published: set[int] = set()
        self.examples = 0

    async def take_published(self) -> None:
        info = await self.js.stream_info(self.stream_name)
        for seq in range(self.seen_seq + 1, info.state.last_seq + 1):
            message = await self.js.get_msg(self.stream_name, seq)
            # What the relay publishes, a consumer can read.
            self.published.add(Envelope.from_json(message.data).global_position)
        self.seen_seq = info.state.last_seq

    async def relay_reached(self, position: int) -> bool:
        return await self.store.get_checkpoint("relay") >= position

    async def example(self, rows: list[dict]) -> None:
        store = self.store
        self.examples += 1
        before = await _request(store, 2 * self.examples)
        inserted = [(p, row) for row in rows if (p := await _insert(store, row, before)) is not None]
        after = await _request(store, 2 * self.examples + 1)

        # The relay publishes past the bad rows (no retrying one forever).
        await eventually(lambda: self.relay_reached(after.global_position), timeout=30,
                         what=f"the relay to publish past rows {[p for p, _ in inserted]}")
        await self.take_published()
        assert {before.global_position, after.global_position} <= self.published

        # The projector catches up past them, and a rebuild gives the very same tables.
        await Projector(store, batch=7).run_once()
        assert await store.get_checkpoint("projector") == after.global_position
        live = await snapshot(store)
        await Projector(store, batch=5).rebuild()
        assert await snapshot(store) == live

        # The read commands' queries.
        bad = []
        read, _ = await store.read_page(before.global_position - 1, 1000, bad)
        read_at = {e.global_position for e in read}
        assert {before.global_position, after.global_position} <= read_at
        runs = {r["run_id"]: r for r in await list_runs(store, 100_000)}
        assert runs[after.stream_id]["status"] == "RUNNING" and runs[after.stream_id]["repo"] == after.data.repo
        assert before.stream_id in runs
        assert all(STREAM_ID.fullmatch(run_id) for run_id in runs)
        for run_id in (before.stream_id, after.stream_id):
            await store.read_correlated(run_id)
            await get_run(store, run_id)
        report = await collect(store, nats_url=None, stream_name=self.stream_name, services=[],
                               stall_after=3600)
        quarantined = {f["global_position"]: f for f in report.faults}

        # Each row is read by every reader or quarantined by every reader, never both or neither.
        for position, row in inserted:
            published, decoded = position in self.published, position in read_at
            assert published == decoded, (position, row)
            assert (position in quarantined) != decoded, (position, row)
            if not decoded:
                assert position in store.skipped and store.skipped[position].reason
                assert quarantined[position]["reason"]
                await self.quarantined_request_ended(position, row, runs)

    async def quarantined_request_ended(self, position: int, row: dict, runs: dict) -> None:
        """A request that cannot be read is a failed run (saying why), never one in progress."""
        stream = await self.store.pool.fetchval("SELECT stream_id FROM events WHERE global_position = $1",
                                                position)
        try:
            repo = json.loads(row["data"]).get("repo")
        except AttributeError:
            repo = None
        if isinstance(repo, str):
            assert stream not in await unfinished_runs(self.store, repo, None)
        if row["type"] in REQUEST_TYPES and row["stream"] == "fresh" and stream in runs:
            assert runs[stream]["status"] == "FAILED" and "could not be read" in runs[stream]["error"]
        if row["type"] in ENDS and row["stream"] == "before":  # the store counts the run as ended
            assert runs[stream]["status"] != "RUNNING"


def test_no_row_stops_a_reader(database_url, nats_url, unique, cli_env):
    import nats

    async def setup():
        cm = scratch_store(database_url, f"t_{unique}")
        store = await cm.__aenter__()
        nc = await nats.connect(nats_url)
        stop = asyncio.Event()
        names = {"stream_name": f"PILOT_{unique.upper()}", "subject_prefix": f"pilot{unique}"}
        relay = Relay(store, nc, **names, poll_interval=0.2, checkpoint_interval=0.05)
        task = asyncio.create_task(relay.run(stop))
        return cm, nc, stop, task, _Log(store, nc.jetstream(), names["stream_name"])

    async def teardown(cm, nc, stop, task, log):
        stop.set()
        await asyncio.wait_for(task, 15)
        await nc.jetstream().delete_stream(log.stream_name)
        await nc.close()
        await cm.__aexit__(None, None, None)

    with asyncio.Runner() as runner:
        cm, nc, stop, task, log = runner.run(setup())
        try:
            @settings(max_examples=40, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
            @given(rows=bad_rows())
            def check(rows):
                runner.run(log.example(rows))

            check()
            # The commands themselves, over everything the examples left in the log.
            last = runner.run(log.store.pool.fetchval(
                "SELECT stream_id FROM events WHERE type = 'PipelineRequested' ORDER BY global_position DESC"))
            assert last in cli(cli_env, "runs", "--limit", "1000").stdout
            assert last in cli(cli_env, "status", last).stdout
            for args in (["events", "--json"], ["projections", "rebuild"]):  # both read the whole log
                assert "unreadable event(s)" in cli(cli_env, *args).stderr, args
            health = cli(cli_env, "health", "--json", check=False)
            assert health.returncode == 1 and json.loads(health.stdout)["faults"]
        finally:
            runner.run(teardown(cm, nc, stop, task, log))


async def test_the_timestamps_postgres_holds_and_python_cannot(store):
    """A year past 9999 or before 1 fails inside asyncpg's decoder, before any reader sees the row."""
    first = await _request(store, 0)
    for at in ("20000-01-01", "4713-01-01 BC", "infinity"):
        await store.pool.execute(
            "INSERT INTO events (stream_id, version, event_id, type, data, metadata, occurred_at) "
            "VALUES ($1, 1, $2, 'StepStarted', '{\"step\": \"analyze\"}', '{}', $3::text::timestamptz)",
            new_run_stream(), uuid.uuid4(), at)
    last = await _request(store, 1)
    assert [e.global_position for e in await store.read_all(0)] == [first.global_position, last.global_position]
    await Projector(store).run_once()
    assert {r["run_id"] for r in await list_runs(store)} == {first.stream_id, last.stream_id}
    assert all("occurred_at" in row.reason for row in store.skipped.values())
    assert len(store.skipped) == 3
