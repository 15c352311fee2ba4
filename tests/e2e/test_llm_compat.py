"""Compatibility suite: one whole run per kind of model server, over real NATS, Postgres and git,
with the real openai client speaking HTTP to a scripted server that answers the way that kind of
server does (tests/support/families.py). Every family must complete and merge the same sound
change (shell=True replaced, a function added after another) in a known number of model calls.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from shared.app.bootstrap import real_engine_factory
from shared.app.render import live_view
from shared.engines.llm_client import RetryPolicy
from shared.engines.llm_endpoint import endpoint
from shared.events import PipelineRequested
from tests.support.families import CATEGORIES, CORE, FAMILIES, asked_mode, make_tools_repo, script_tools
from tests.support.model_server import ScriptedModelServer
from tests.support.pipeline import run_pipeline

pytestmark = pytest.mark.e2e

FAST = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.5)
# analyze 2 (the docs are written again after the merge), suggest 2 (one per category),
# implement 4, review 3 samples, write_tests 2
CLEAN_CALLS = 13

# family -> (model calls the run takes, structured-output modes the requests used)
EXPECTED: dict[str, tuple[int, set[str]]] = {
    "openai_json_schema": (CLEAN_CALLS, {"json_schema"}),
    "prose_and_fences": (CLEAN_CALLS, {"json_schema"}),
    "think_blocks": (CLEAN_CALLS, {"json_schema"}),
    "vllm_reasoning_content": (CLEAN_CALLS, {"guided"}),
    "ollama_format": (CLEAN_CALLS, {"ollama_format"}),
    "tool_calls": (CLEAN_CALLS, {"tools"}),
    "lm_studio_refuses_json_object": (CLEAN_CALLS, {"json_schema"}),
    "json_schema_refused": (CLEAN_CALLS + 1, {"json_schema", "json_object"}),  # one 400, then remembered
    "one_improvement_per_category": (CLEAN_CALLS - 2, {"json_schema"}),
    "review_dimensions_renamed": (CLEAN_CALLS, {"json_schema"}),
    "one_request_at_a_time": (CLEAN_CALLS, {"json_schema"}),
    "slow_answers": (CLEAN_CALLS, {"json_schema"}),
    "429_when_busy": (CLEAN_CALLS, {"json_schema"}),  # plus the 429s, counted apart
}


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def of(events, kind: str) -> list:
    return [e.data for e in events if e.type == kind]


async def _watch(base_url: str, seen: list[str], stop: asyncio.Event) -> None:
    """What the live view shows about model calls while the run goes on."""
    from rich.console import Console

    while not stop.is_set():
        console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(live_view(None, []))
        text = console.export_text()
        console.file.close()
        if base_url in text:
            seen.append(text)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_each_server_family_completes_and_merges_the_sound_change(family, settings, tmp_path):
    spec = FAMILIES[family]
    repo = make_tools_repo(tmp_path / "tools")
    before = _git(repo, "rev-parse", "main").strip()
    with ScriptedModelServer(**spec.server) as server:
        if spec.before:
            spec.before(server)
        script_tools(server, ideas_per_category=spec.ideas_per_category, review=spec.review)
        llm_settings = settings.model_copy(update={
            "openai_base_url": server.base_url, "openai_api_key": "test", "openai_model": "gpt-4.1-mini",
            **spec.settings,
        })
        seen: list[str] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch(server.base_url, seen, stop))
        try:
            run, beads, events = await run_pipeline(
                llm_settings,
                PipelineRequested(repo=str(repo), engine="llm", categories=list(CATEGORIES)),
                make_engine=real_engine_factory(llm_settings, retry=FAST, timeout=spec.timeout),
            )
        finally:
            stop.set()
            await watcher

    assert run["status"] == "COMPLETED", run["error"]
    assert run["merged"] is True, run["error"]
    core = _git(repo, "show", "main:tools/core.py")
    assert "shell=True" not in core and "subprocess.run(shlex.split(cmd)" in core
    if spec.ideas_per_category == 2:
        assert "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef run(cmd):" in core
    assert core != CORE and _git(repo, "rev-parse", "main").strip() != before
    applied = sorted(a.improvement_id for a in of(events, "ChangeApplied"))
    wanted = ["compliance-1", "compliance-2", "security-1", "security-2"][:: 3 - spec.ideas_per_category]
    assert applied == sorted(wanted) and of(events, "ChangeRejected") == []
    [tests] = of(events, "TestsCompleted")
    assert tests.regressed is False and {g.group: g.failed for g in tests.groups} == {"security": 0, "compliance": 0}

    calls, modes = EXPECTED[family]
    busy = server.busy_refusals
    assert len(server.requests) - busy == calls, server.purposes()
    recorded = of(events, "LlmCallRecorded")
    assert len(recorded) == len(server.requests)  # every HTTP request is in the log
    assert {asked_mode(r) for r in server.requests} == modes

    if family == "one_improvement_per_category":
        notes = {c.purpose: c.note for c in recorded if c.note}
        assert "accepted 1 improvement" in notes["suggest:security"]
    if family == "review_dimensions_renamed":
        [review] = of(events, "ChangesReviewed")
        assert review.model_score == 9 and review.passed
        assert any("not scored by the model: scope" in (c.note or "") for c in recorded)
    if family == "one_request_at_a_time":
        assert server.peak == 1 and all(c.error is None for c in recorded)
    if family == "slow_answers":
        assert server.peak == 2  # the local-server default, though 4 implement calls were due at once
        assert any(" waiting (at most 2 at once)" in text and "2 running" in text for text in seen)
    if family == "429_when_busy":
        throttled = [c for c in recorded if c.error and "429" in c.error]
        assert busy == len(throttled) >= 1
        assert endpoint(server.base_url).limit == 1  # the 429s taught it to ask one at a time
