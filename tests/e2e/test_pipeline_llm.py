"""The whole pipeline with the `llm` engine: real NATS, Postgres and git, and the real openai
client speaking HTTP to a scripted model server, on a fixture repository with its own tests."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from shared.app.bootstrap import real_engine_factory
from shared.engines.llm import REVIEW_SAMPLES
from shared.engines.llm_client import RetryPolicy
from shared.events import PipelineRequested
from tests.support.llm_script import (
    BREAK_ADD,
    CATEGORIES,
    CORE,
    DOCS,
    EDITS,
    edits,
    make_calc_repo,
    purpose,
    script_happy_path,
)
from tests.support.model_server import Fault, messages_text
from tests.support.pipeline import run_pipeline

pytestmark = pytest.mark.e2e

# Retries stay real (tenacity, every attempt recorded) but wait milliseconds, not seconds.
FAST = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.02)
STEPS = ("analyze", "suggest", "execute", "test", "review", "merge", "docs")


def _git(repo, *args) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    return make_calc_repo(tmp_path / "calc")


async def run_llm(llm_settings, repo, metadata=None):
    request = PipelineRequested(repo=str(repo), engine="llm", categories=list(CATEGORIES))
    return await run_pipeline(
        llm_settings,
        request,
        metadata=metadata,
        make_engine=real_engine_factory(llm_settings, retry=FAST, timeout=10),
    )


def of(events, kind: str) -> list:
    return [e.data for e in events if e.type == kind]


def step_status(beads) -> dict[str, str]:
    return {b["bead_id"]: b["status"] for b in beads if b["kind"] == "step"}


# -- runs that end -----------------------------------------------------------------------------


async def test_a_good_change_is_merged_with_one_commit_per_improvement_and_docs(llm_settings, server, repo):
    script_happy_path(server)
    before = _git(repo, "rev-parse", "main")
    run, beads, events = await run_llm(llm_settings, repo)

    assert run["status"] == "COMPLETED", run["error"]
    assert run["merged"] is True, run["error"]
    applied = of(events, "ChangeApplied")
    assert sorted(a.improvement_id for a in applied) == sorted(EDITS)
    assert of(events, "ChangeRejected") == []
    branch_commits = _git(repo, "rev-list", f"{before}..{run['branch']}").splitlines()
    assert len(branch_commits) == len(EDITS) + 1  # one commit per improvement, one with the tests of the change
    assert _git(repo, "rev-parse", "main") != before
    assert set(branch_commits) <= set(_git(repo, "rev-list", "main").splitlines())
    assert 'raise ValueError("cannot divide by zero")' in _git(repo, "show", "main:calc/core.py")
    for key, text in DOCS.items():
        assert _git(repo, "show", f"main:docs/{key}.md") == text.strip()

    assert step_status(beads) == dict.fromkeys(STEPS, "COMPLETED")
    assert {b["status"] for b in beads if b["kind"] == "improvement"} == {"COMPLETED"}
    tests = of(events, "TestsCompleted")[0]
    assert tests.regressed is False and tests.own_after.passed == 3 and tests.own_after.failed == 0
    assert {g.group: (g.passed, g.failed) for g in tests.groups} == {"security": (1, 0), "compliance": (1, 0)}

    calls = of(events, "LlmCallRecorded")
    purposes = {c.purpose for c in calls}
    assert {
        "analyze",
        "suggest:security",
        "suggest:compliance",
        "review",
        "write_tests:security",
        "write_tests:compliance",
    } <= purposes
    assert {f"implement:{i}" for i in EDITS} <= purposes
    assert all(c.error is None for c in calls)
    assert run["tokens"] == sum(c.prompt_tokens + c.completion_tokens for c in calls) > 0
    assert run["cost_usd"] > 0
    review = of(events, "ChangesReviewed")[0]
    assert review.passed and review.model_score == 9


async def test_a_score_below_the_threshold_keeps_the_branch_unmerged(llm_settings, server, repo):
    script_happy_path(server, review_score=3)
    before = _git(repo, "rev-parse", "main")
    run, beads, events = await run_llm(llm_settings, repo)

    assert run["status"] == "COMPLETED", run["error"]
    assert run["merged"] is False
    [merge] = of(events, "MergeCompleted")
    assert merge.merged is False and merge.pushed is True
    assert "below the threshold" in merge.reason
    assert "below the threshold" in (run["error"] or "")
    merge_bead = next(b for b in beads if b["bead_id"] == "merge")
    assert merge_bead["status"] == "COMPLETED" and "left open" in json.dumps(merge_bead["metadata"])
    assert _git(repo, "rev-parse", "main") == before  # not merged
    kept = _git(repo, "rev-list", f"{before}..{merge.branch}").splitlines()
    assert len(kept) == len(EDITS) + 1  # branch kept: the improvements and the tests of the change
    docs_bead = next(b for b in beads if b["bead_id"] == "docs")
    assert docs_bead["status"] == "SKIPPED" and "not merged" in docs_bead["error"]


async def test_a_change_that_breaks_the_repositorys_own_tests_is_not_merged(llm_settings, server, repo):
    script_happy_path(server, review_score=10, overrides={"implement:security-1": edits(BREAK_ADD)})
    before = _git(repo, "rev-parse", "main")
    run, beads, events = await run_llm(llm_settings, repo)

    assert run["status"] == "COMPLETED", run["error"]
    [tests] = of(events, "TestsCompleted")
    assert tests.regressed is True
    assert tests.own_before.failed == 0 and tests.own_after.failed == 1
    [merge] = of(events, "MergeCompleted")
    assert merge.merged is False and "regressed" in merge.reason
    merge_bead = next(b for b in beads if b["bead_id"] == "merge")
    assert "regressed" in merge_bead["metadata"]["summary"]
    assert run["merged"] is False
    assert _git(repo, "rev-parse", "main") == before
    assert _git(repo, "show", "main:calc/core.py") == CORE.strip()


async def test_a_model_that_never_answers_json_for_suggest_fails_the_run_at_suggest(
    llm_settings, server, repo
):
    server.add("PURPOSE: suggest:", "Sure! Here are some ideas: 1. validate input")
    script_happy_path(server)
    run, beads, events = await run_llm(llm_settings, repo)

    assert run["status"] == "FAILED"
    [failed] = of(events, "PipelineFailed")
    assert failed.step == "suggest"
    assert "suggest:" in failed.error and "holds no JSON object" in failed.error
    assert "The last answer was 'Sure! Here are some ideas: 1. validate input'" in failed.error
    assert step_status(beads)["suggest"] == "FAILED"
    assert of(events, "ImprovementsSuggested") == []
    # every junk answer was recorded, so the log shows what the model said
    junk = [c for c in of(events, "LlmCallRecorded") if c.purpose.startswith("suggest:")]
    assert junk and all(c.error and "invalid answer" in c.error for c in junk)


async def test_an_edit_outside_the_repository_is_rejected_and_a_failed_block_is_retried_alone(
    llm_settings, server, repo, tmp_path
):
    evil = {"path": "../evil.py", "search": "", "replace": "import os\nos.system('rm -rf ~')\n"}
    good = EDITS["compliance-2"][0]
    missing = {
        "path": "calc/core.py",
        "search": "def mul(a, b):\n    return a * b\n",
        "replace": "def mul(a, b):\n    return a * b  # checked\n",
    }
    fixed = {
        "path": "calc/core.py",
        "search": "def sub(a, b):\n    return a - b\n",
        "replace": "def sub(a, b):\n    return a - b\n\n\ndef neg(a):\n    return -a\n",
    }

    def is_retry(request: dict) -> bool:
        text = messages_text(request)
        return purpose("implement:compliance-2") in text and "# Failed blocks" in text

    server.add(is_retry, edits(fixed))
    server.add(purpose("implement:compliance-2"), edits(good, missing))
    script_happy_path(server, overrides={"implement:security-1": edits(evil)})
    run, beads, events = await run_llm(llm_settings, repo)

    assert run["status"] == "COMPLETED", run["error"]
    [rejected] = of(events, "ChangeRejected")
    assert rejected.improvement_id == "security-1" and "../evil.py" in rejected.reason
    assert not list(tmp_path.rglob("evil.py"))
    bead = next(b for b in beads if b["bead_id"] == "improvement:security-1")
    assert bead["status"] == "SKIPPED" and "../evil.py" in bead["error"]

    applied = {a.improvement_id: a for a in of(events, "ChangeApplied")}
    assert set(applied) == {"security-2", "compliance-1", "compliance-2"}
    assert applied["compliance-2"].files == ["calc/__init__.py", "calc/core.py"]
    assert "def neg(a):" in _git(repo, "show", f"{applied['compliance-2'].commit_sha}:calc/core.py")

    asked = [r for r in server.requests if purpose("implement:compliance-2") in messages_text(r)]
    assert len(asked) == 2
    retry_text = messages_text(asked[1])
    failed_json = re.search(r"# Failed blocks\n.*?```json\n(.*?)\n```", retry_text, re.DOTALL).group(1)
    assert json.loads(failed_json) == [missing]  # only the block that failed, not the applied one


async def test_a_429_storm_on_review_is_retried_recorded_and_fails_the_run(llm_settings, server, repo):
    script_happy_path(server, overrides={"review": Fault.status(429)})
    run, beads, events = await run_llm(llm_settings, repo)

    assert run["status"] == "FAILED"
    [failed] = of(events, "PipelineFailed")
    assert failed.step == "review"
    assert "kept failing" in failed.error and "429" in failed.error
    assert step_status(beads)["review"] == "FAILED"
    assert run["merged"] is None and of(events, "MergeCompleted") == []
    # The review's samples are asked together, and each weathers the storm to its last attempt.
    assert server.purposes().count("review") == REVIEW_SAMPLES * FAST.attempts
    storm = [c for c in of(events, "LlmCallRecorded") if c.purpose == "review"]
    assert sorted(c.attempt for c in storm) == sorted(list(range(1, FAST.attempts + 1)) * REVIEW_SAMPLES)
    assert all(c.error and "429" in c.error for c in storm)


async def test_a_replayed_run_completes_from_the_recorded_answers_alone(llm_settings, server, repo):
    script_happy_path(server)
    before = _git(repo, "rev-parse", "main")
    first, _, first_events = await run_llm(llm_settings, repo)
    assert first["status"] == "COMPLETED" and first["merged"] is True, first["error"]
    asked = len(server.requests)

    # Replaying answers needs the same prompts, so the repository goes back to where the first run
    # started; the model now answers nothing at all (no rules, no default: HTTP 400).
    _git(repo, "reset", "-q", "--hard", before)
    server.clear()
    run, beads, events = await run_llm(llm_settings, repo, metadata={"replayed_from": first["run_id"]})

    assert run["status"] == "COMPLETED", run["error"]
    assert run["merged"] is True
    assert len(server.requests) == asked
    assert step_status(beads) == dict.fromkeys(STEPS, "COMPLETED")
    calls = of(events, "LlmCallRecorded")
    assert calls and all(c.error is None and c.prompt_tokens == 0 for c in calls)
    assert {c.prompt_hash for c in calls} <= {c.prompt_hash for c in of(first_events, "LlmCallRecorded")}
    assert 'raise ValueError("cannot divide by zero")' in _git(repo, "show", "main:calc/core.py")
