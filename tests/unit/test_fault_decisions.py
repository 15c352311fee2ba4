"""Pure decisions behind issue 13: event size bound, clipping, patch budget, relay refusal and
resume position, the data directory default."""

from __future__ import annotations

import json

import nats.errors
import nats.js.errors
import pytest

from shared.events.limits import MAX_PATCH_CHARS, MAX_SERIES_CHARS, clip, patch_refusal
from shared.messaging.relay import refusal_kind, resume_position
from shared.store import EventTooLarge
from shared.store.postgres import check_event_size

pytestmark = pytest.mark.unit


def test_event_size_names_the_largest_field():
    data = json.dumps({"repo": "r", "spec": "é" * 400_000}, ensure_ascii=False)  # 2 bytes a character
    check_event_size("run-1", "RepoAnalyzed", data, "{}", 900_000)
    with pytest.raises(EventTooLarge) as caught:
        check_event_size("run-1", "RepoAnalyzed", data, "{}", 700_000)
    assert caught.value.field == "data.spec" and caught.value.size > 800_000
    assert caught.value.field_size == 800_002


def test_clip_keeps_short_text_and_says_what_it_cut():
    assert clip("short", 10) == "short"
    out = clip("x" * 1000, 200, "model answer")
    assert len(out) == 200 and out.endswith("[model answer cut at 200 of 1,000 characters to fit in an event]")


def test_patch_refusal_per_patch_and_per_series():
    assert patch_refusal(1000, 0) is None
    assert "too large to record" in patch_refusal(MAX_PATCH_CHARS + 1, 0)
    assert "later run" in patch_refusal(1000, MAX_SERIES_CHARS - 999)
    assert patch_refusal(1000, MAX_SERIES_CHARS - 1000) is None


def test_refusal_kind_separates_permanent_from_transient():
    assert refusal_kind(nats.errors.MaxPayloadError()) == "too_large"
    assert refusal_kind(nats.js.errors.APIError(code=400, err_code=10054)) == "too_large"
    assert refusal_kind(nats.errors.NoRespondersError()) is None  # the stream is missing: recover
    assert refusal_kind(nats.errors.TimeoutError()) is None
    assert refusal_kind(nats.js.errors.APIError(code=503, err_code=10008)) is None


def test_resume_position_republishes_what_the_stream_lacks():
    assert resume_position(50, stream_messages=50, stream_last_position=50) == 50
    assert resume_position(50, stream_messages=0, stream_last_position=None) == 0  # wiped
    assert resume_position(50, stream_messages=10, stream_last_position=10) == 10  # recreated, partly refilled
    assert resume_position(50, stream_messages=60, stream_last_position=60) == 50


def test_data_directory_is_never_home_itself(monkeypatch, tmp_path):
    from shared.common.settings import Settings

    monkeypatch.delenv("REPO_PILOT_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    home = Settings(_env_file=None).home
    assert home != tmp_path and tmp_path in home.parents and home.name == "repo-pilot"
    monkeypatch.setenv("REPO_PILOT_HOME", str(tmp_path / "data"))
    assert Settings(_env_file=None).home == tmp_path / "data"


def test_a_test_timeout_reads_as_a_timeout_not_zero_of_zero():
    from shared.app.render import tally
    from shared.events import TestGroupResult

    timed_out = TestGroupResult(group="own", errors=1, timed_out=600, output="timed out after 600s")
    assert tally(timed_out.model_dump()) == "timed out after 600s"
    assert tally(TestGroupResult(group="own", total=4, passed=3).model_dump()) == "3/4 passed"
