"""The llm engine against a real llama.cpp server (llama-cpp-python's OpenAI-compatible server)
running a real GGUF model (tests/support/tiny_gguf.py: a tiny model whose answers are the smallest
the schema's grammar admits). No scripted replies: what is checked is that Repo Pilot's requests
are ones this server takes, that it finds the structured-output mode the server has, and that a
whole run ends cleanly on what such a model answers.

Skipped, saying why, where the optional `compat` extra is not installed (`make compat`).
"""

from __future__ import annotations

import openai
import pytest

from shared.app.bootstrap import real_engine_factory
from shared.engines.llm import LlmEngine
from shared.engines.llm_budget import Budget
from shared.engines.llm_client import RetryPolicy
from shared.engines.llm_endpoint import endpoint
from shared.events import PipelineRequested
from tests.support import llama_server
from tests.support.families import CATEGORIES, make_tools_repo
from tests.support.pipeline import run_pipeline

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(llama_server.available() is not None, reason=str(llama_server.available()))]

FAST = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.5)


@pytest.fixture
def llama(tmp_path):
    with llama_server.llama_server(tmp_path) as base_url:
        yield base_url


async def test_the_server_refuses_json_schema_and_the_engine_moves_to_json_object_with_the_schema(llama, tmp_path):
    repo = make_tools_repo(tmp_path / "tools")
    engine = LlmEngine(openai.AsyncOpenAI(base_url=llama, api_key="none"), "tiny", Budget(), retry=FAST, timeout=60)
    analysis = await engine.analyze(repo)
    first, second = engine.drain_calls()
    # llama-cpp-python validates response_format and answers 500: a refusal, not an outage to retry
    assert "500" in first.error and "(asked with json_schema)" in first.error and first.response == ""
    assert second.error is None and second.attempt == 2
    assert endpoint(llama).refused == {"json_schema"}
    # the answer obeys the schema the request carried (json_object + schema → a grammar):
    # every document present and non-empty, as AnalysisAnswer demands
    assert analysis.specification and analysis.graph


async def test_a_whole_run_against_the_real_server_completes_and_says_why_nothing_merged(llama, settings, tmp_path):
    repo = make_tools_repo(tmp_path / "tools")
    llm_settings = settings.model_copy(update={"openai_base_url": llama, "openai_api_key": "none",
                                               "openai_model": "tiny"})
    run, beads, events = await run_pipeline(
        llm_settings, PipelineRequested(repo=str(repo), engine="llm", categories=list(CATEGORIES)),
        make_engine=real_engine_factory(llm_settings, retry=FAST, timeout=60), timeout=300)

    assert run["status"] == "COMPLETED", run["error"]
    assert run["merged"] is False
    calls = [e.data for e in events if e.type == "LlmCallRecorded"]
    assert calls and all(c.error is None for c in calls[1:]), [c.error for c in calls]
    skipped = [c.note for c in calls if c.purpose.startswith("suggest:")]
    assert len(skipped) == len(CATEGORIES) and all("the model suggested nothing" in n for n in skipped), skipped
    [suggested] = [e.data for e in events if e.type == "ImprovementsSuggested"]
    assert suggested.improvements == []
    assert [e.data.reason for e in events if e.type == "StepSkipped"] == [
        "not merged: no improvement could be applied: nothing to merge"]
