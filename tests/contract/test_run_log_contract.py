"""The RunLog port: one contract suite, run against the real FileRunLog (JSON files) and the
in-memory fake the handler unit tests use, both over the same in-memory store."""

from __future__ import annotations

import json

import pytest

from shared.adapters.run_log import FileRunLog
from shared.events import PipelineCompleted, PipelineRequested, new_run_stream
from shared.ports.run_log import RunLog
from tests.support.fakes import FakeRunLog, InMemoryEventStore, given


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration),
                        pytest.param("fake", marks=pytest.mark.unit)])
def case(request, tmp_path):
    store = InMemoryEventStore()
    log = FileRunLog(store, tmp_path / "runs") if request.param == "real" else FakeRunLog(store, tmp_path / "runs")
    return store, log


def logged_types(log, path, run_id) -> list[str]:
    """What a reader of the written log sees, as event types."""
    if isinstance(log, FakeRunLog):
        return [e.type for e in log.logs[run_id]]
    return [e["type"] for e in json.loads(path.read_text())]


def test_implements_the_port(case):
    assert isinstance(case[1], RunLog)


async def test_the_path_is_known_before_and_the_log_holds_the_stream_as_stored(case):
    store, log = case
    run = new_run_stream()
    where = log.path(run)
    await given(store, run, PipelineRequested(repo="demo"))
    assert await log.write(run) == where
    assert logged_types(log, where, run) == ["PipelineRequested"]

    await given(store, run, PipelineCompleted(verdict="merged"))
    assert await log.write(run) == where  # again, once more is stored: harmless, and complete
    assert logged_types(log, where, run) == ["PipelineRequested", "PipelineCompleted"]
    assert log.path(new_run_stream()) != where
