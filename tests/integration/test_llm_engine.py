"""The llm engine with the real openai client against the scripted model server, on a real git repo."""

from __future__ import annotations

import json
import subprocess
import threading

import openai
import pytest

from shared.engines.llm import LlmEngine
from shared.engines.llm_budget import Budget
from shared.engines.llm_client import RetryPolicy
from shared.engines.llm_endpoint import endpoint
from shared.events import Improvement
from shared.ports.engine import Engine
from shared.ports.errors import ChangeRejectedError, StepError
from tests.conftest import make_git_repo
from tests.support.model_server import Fault, ScriptedModelServer

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.02)
CORE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "README.md").write_text("# Calc\nA tiny calculator library.\n")
    (root / "pyproject.toml").write_text('[project]\nname = "calc"\nversion = "0.1.0"\n')
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "core.py").write_text(CORE)
    (root / "tests" / "test_core.py").write_text("from pkg.core import add\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    (root / ".env").write_text("OPENAI_API_KEY=sk-very-secret\n")
    (root / "logo.png").write_bytes(b"\x89PNG\x00\x00")
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return root


@pytest.fixture
def server():
    with ScriptedModelServer() as s:
        yield s


@pytest.fixture
def make_engine(server):
    def make(**kw) -> LlmEngine:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
        kw.setdefault("retry", FAST)
        kw.setdefault("timeout", 2.0)
        return LlmEngine(client, kw.pop("model", "gpt-4.1-mini"), kw.pop("budget", Budget()), **kw)
    return make


def improvement(**kw) -> Improvement:
    base = {"id": "features-1", "category": "features", "title": "Add mul", "rationale": "calculators multiply",
            "files": ["pkg/core.py"], "changes": "add a mul function"}
    return Improvement(**{**base, **kw})


def edits(*blocks: dict, summary: str = "done") -> str:
    return json.dumps({"edits": list(blocks), "summary": summary})


ADD_MUL = {"path": "pkg/core.py", "search": "def sub(a, b):\n    return a - b\n",
           "replace": "def sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"}
DOCS = json.dumps({"specification": "# Spec\ncalc", "graph": "- pkg.core", "architecture": "# Arch\none module"})


def ideas(n: int, prefix: str = "idea") -> str:
    return json.dumps({"improvements": [
        {"title": f"{prefix} {i}", "rationale": "because", "files": ["pkg/core.py"], "changes": "x"}
        for i in range(1, n + 1)]})


# -- happy paths -----------------------------------------------------------------------------

async def test_engine_implements_the_port(make_engine):
    assert isinstance(make_engine(), Engine) and make_engine().name == "llm"


async def test_analyze_reads_the_scan_without_secrets_and_records_the_call(repo, server, make_engine):
    server.add("PURPOSE: analyze", DOCS)
    engine = make_engine()
    analysis = await engine.analyze(repo)
    assert analysis.specification.startswith("# Spec") and analysis.graph and analysis.architecture
    assert analysis.stats["skipped"]["secrets"] == 1 and analysis.stats["skipped"]["binary"] == 1
    sent = json.dumps(server.requests[0])
    assert "A tiny calculator library" in sent and "def add(a, b)" in sent
    assert "sk-very-secret" not in sent and ".env" not in sent
    assert sent.index("README.md") < sent.index("pkg/core.py")
    # the endpoint's strongest mode: the answer's JSON schema
    assert server.requests[0]["response_format"]["type"] == "json_schema"
    assert server.requests[0]["response_format"]["json_schema"]["name"] == "AnalysisAnswer"
    assert server.requests[0]["max_tokens"] > 0  # the answer cap the budget reserved
    [call] = engine.drain_calls()
    assert call.purpose == "analyze" and call.model == "gpt-4.1-mini" and call.error is None
    assert call.prompt_tokens > 0 and call.cost_usd > 0 and call.response == DOCS and len(call.prompt_hash) == 64
    assert engine.drain_calls() == []


async def test_suggest_asks_categories_concurrently_with_stable_ids(repo, server, make_engine):
    # All four requests must be in flight at once to pass the barrier; sequential calls break it.
    barrier = threading.Barrier(4, timeout=10)

    def together(reply: str):
        def answer(_request):
            barrier.wait()
            return reply
        return answer

    server.add("PURPOSE: suggest:features", together(ideas(3, "feat")))
    server.add("PURPOSE: suggest:security", together(ideas(5, "sec")))  # more than 4: keep 4
    server.add("PURPOSE: suggest:compliance", together(ideas(2)))
    server.add("PURPOSE: suggest:integration", together(ideas(2)))
    engine = make_engine(endpoint=endpoint(server.base_url, concurrency=4))
    analysis = await make_engine_analysis(engine, repo, server)
    found = await engine.suggest(repo, analysis, ["features", "security", "compliance", "integration"])
    assert [i.id for i in found] == ["features-1", "features-2", "features-3", "security-1", "security-2",
                                     "security-3", "security-4", "compliance-1", "compliance-2",
                                     "integration-1", "integration-2"]
    assert found[0].title == "feat 1" and found[0].category == "features" and found[0].files == ["pkg/core.py"]
    assert sorted(c.purpose for c in engine.drain_calls()) == [
        "analyze", "suggest:compliance", "suggest:features", "suggest:integration", "suggest:security"]


async def make_engine_analysis(engine, repo, server):
    server.add("PURPOSE: analyze", DOCS)
    return await engine.analyze(repo)


async def test_one_idea_is_accepted_with_a_note_and_none_skips_the_category(repo, server, make_engine):
    server.add("PURPOSE: suggest:security", ideas(1))
    server.add("PURPOSE: suggest:features", json.dumps({"improvements": [], "reason": "nothing to add here"}))
    engine = make_engine()
    analysis = await make_engine_analysis(engine, repo, server)
    engine.drain_calls()
    found = await engine.suggest(repo, analysis, ["security", "features"])
    assert [i.id for i in found] == ["security-1"]
    assert len(server.requests) == 3  # analyze + one call per category: nothing asked again
    calls = {c.purpose: c for c in engine.drain_calls()}
    assert calls["suggest:security"].error is None and "accepted 1 improvement" in calls["suggest:security"].note
    assert calls["suggest:features"].note == "category features skipped: the model suggested nothing (nothing to add here)"


async def test_implement_applies_edit_blocks(repo, server, make_engine):
    server.add("PURPOSE: implement:features-1", edits(ADD_MUL, summary="mul added"))
    result = await make_engine().implement(repo, improvement())
    assert result.files == ["pkg/core.py"] and result.summary == "mul added"
    assert "def mul(a, b)" in (repo / "pkg/core.py").read_text()
    assert "def sub(a, b)" in json.dumps(server.requests[0])  # the file's contents were sent


async def test_review_takes_three_samples_and_uses_the_median(repo, server, make_engine):
    (repo / "pkg/core.py").write_text(CORE + "\n\ndef mul(a, b):\n    return a * b\n")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "mul")
    overall = iter([6, 9, 7])

    def answer(_request):
        score = next(overall)
        return json.dumps({"scores": {d: score for d in ("correctness", "security", "maintainability",
                                                          "readability", "test_coverage", "scope")},
                           "overall": score, "issues": [f"issue {score}"], "summary": f"s{score}"})

    server.add("PURPOSE: review", answer)
    review = await make_engine().review(repo, "HEAD~1", "HEAD", {"ruff": 0})
    # The samples are asked together, so which one the server answered first is not fixed.
    assert sorted(review.samples) == [6, 7, 9] and review.overall == 7 and review.summary == "s7"
    assert review.scores["correctness"] == 7 and len(review.scores) == 6
    assert "def mul" in json.dumps(server.requests[0])


async def test_review_samples_are_asked_at_once(repo):
    """The samples do not depend on each other, so none waits for another's answer."""
    full = {d: 8 for d in ("correctness", "security", "maintainability", "readability", "test_coverage", "scope")}
    with ScriptedModelServer(answer_delay=0.3) as slow:
        slow.add("PURPOSE: review", json.dumps({"scores": full, "overall": 8}))
        client = openai.AsyncOpenAI(base_url=slow.base_url, api_key="test")
        engine = LlmEngine(client, "test-model", retry=FAST, endpoint=endpoint(slow.base_url, concurrency=8))
        review = await engine.review(repo, "HEAD", "HEAD", {})
    assert review.samples == [8, 8, 8] and len(slow.requests) == 3
    assert slow.peak == 3  # all three were being answered at the same time


async def test_review_takes_one_sample_when_the_budget_is_tight(repo, server, make_engine):
    full = {d: 8 for d in ("correctness", "security", "maintainability", "readability", "test_coverage", "scope")}
    server.add("PURPOSE: review", {"content": json.dumps({"scores": full, "overall": 8}),
                                   "usage": {"prompt_tokens": 600, "completion_tokens": 100}})
    review = await make_engine(budget=Budget(max_tokens=1000)).review(repo, "HEAD", "HEAD", {})
    assert review.samples == [8] and len(server.requests) == 1


async def test_review_with_renamed_and_missing_dimensions_is_scored_from_what_is_there(repo, server, make_engine):
    renamed = {"Correctness": "8/10", "Safety": 9, "code quality": 7, "Clarity": "7", "Tests": 6, "vibes": 10}
    server.add("PURPOSE: review", json.dumps({"scores": renamed, "overall": 8, "summary": "fine"}))
    engine = make_engine()
    review = await engine.review(repo, "HEAD", "HEAD", {})
    assert review.overall == 8 and review.samples == [8, 8, 8] and len(server.requests) == 3  # no re-asks
    assert review.scores == {"correctness": 8, "security": 9, "maintainability": 7, "readability": 7,
                             "test_coverage": 6}
    assert "not scored by the model: scope" in review.summary
    assert any("not scored by the model: scope" in (c.note or "") for c in engine.drain_calls())


async def test_review_with_no_scores_at_all_is_asked_again_quoting_the_problem(repo, server, make_engine):
    server.add("PURPOSE: review", json.dumps({"summary": "looks good"}), times=1)
    server.add("PURPOSE: review", json.dumps({"scores": {"scope": 9}}))
    review = await make_engine(budget=Budget(max_tokens=3000), answer_cap=400).review(repo, "HEAD", "HEAD", {})
    assert review.overall == 9 and review.scores == {"scope": 9}  # overall from the dimension scores
    assert any("give an overall score" in r["messages"][-1]["content"] for r in server.requests[1:])


async def test_write_tests_one_module_per_category_with_improvements(repo, server, make_engine):
    module = "from pkg.core import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
    server.add("PURPOSE: write_tests:features", json.dumps({"content": "def broken(:"}), times=1)
    server.add("PURPOSE: write_tests:features", json.dumps({"content": module}))
    tests = await make_engine().write_tests(repo, [improvement()], ["features", "security"])
    assert tests.groups == {"features": {"tests/repo_pilot/test_features.py": module}}
    assert "not valid Python" in server.requests[1]["messages"][-1]["content"]


async def test_write_tests_in_the_repositorys_own_language(tmp_path, server, make_engine):
    """A JavaScript package is asked for a node:test file (a pytest answer is sent back); a Go
    module gets none, and no request is made for it."""
    js_repo = make_git_repo(tmp_path / "js", {"package.json": '{"name": "tiny", "main": "index.js"}\n',
                                             "index.js": "module.exports = { add: (a, b) => a + b };\n"})
    go_repo = make_git_repo(tmp_path / "go", {"go.mod": "module example.com/x\n\ngo 1.22\n", "x.go": "package x\n"})
    js = "const test = require('node:test');\ntest('adds', () => {});\n"
    server.add("PURPOSE: write_tests:features", json.dumps({"content": "def test_py(): pass"}), times=1)
    server.add("PURPOSE: write_tests:features", json.dumps({"content": js}))
    engine = make_engine()
    assert (await engine.write_tests(go_repo, [improvement()], ["features"])).groups == {}
    assert server.requests == []
    tests = await engine.write_tests(js_repo, [improvement()], ["features"])
    assert tests.groups == {"features": {".repo-pilot/checks/features.cjs": js}}
    assert "node --test" in server.requests[0]["messages"][0]["content"]
    assert "no tests (node:test" in server.requests[1]["messages"][-1]["content"]


# -- structured output failures ----------------------------------------------------------------

async def test_invalid_json_then_valid_is_retried_and_both_recorded(repo, server, make_engine):
    server.add("PURPOSE: implement", "this is not json {", times=1)
    server.add("PURPOSE: implement", edits(ADD_MUL))
    engine = make_engine()
    await engine.implement(repo, improvement())
    first, second = engine.drain_calls()
    assert (first.attempt, second.attempt) == (1, 2)
    assert first.error.startswith("invalid answer: the answer holds no JSON object") and first.response == "this is not json {"
    assert second.error is None
    assert "holds no JSON object" in server.requests[1]["messages"][-1]["content"]
    assert server.requests[1]["messages"][-2] == {"role": "assistant", "content": "this is not json {"}


async def test_invalid_json_always_fails_the_step(repo, server, make_engine):
    server.add("PURPOSE: implement", "nope")
    engine = make_engine(max_format_retries=2)
    with pytest.raises(StepError, match=r"implement:features-1: nothing usable in the model's answers after 3 "
                                        r"attempts: .*The last answer was 'nope'"):
        await engine.implement(repo, improvement())
    assert len(engine.drain_calls()) == 3 and len(server.requests) == 3
    assert (repo / "pkg/core.py").read_text() == CORE


# -- edits -------------------------------------------------------------------------------------

async def test_edit_path_outside_the_repo_is_rejected(repo, server, make_engine):
    server.add("PURPOSE: implement", edits(ADD_MUL, {"path": "../evil.py", "search": "", "replace": "x = 1\n"}))
    with pytest.raises(ChangeRejectedError, match=r"\.\./evil\.py") as caught:
        await make_engine().implement(repo, improvement())
    assert "outside the repository" in caught.value.reason
    assert not (repo.parent / "evil.py").exists() and (repo / "pkg/core.py").read_text() == CORE


async def test_improvement_naming_a_path_outside_is_rejected(repo, server, make_engine):
    with pytest.raises(ChangeRejectedError, match="/etc/passwd"):
        await make_engine().implement(repo, improvement(files=["/etc/passwd"]))
    assert server.requests == []


async def test_only_the_failed_block_is_sent_back_and_fixed(repo, server, make_engine):
    good = {"path": "README.md", "search": "A tiny calculator library.", "replace": "A tiny, GOOD calculator."}
    bad = {"path": "pkg/core.py", "search": "def sub(x, y):\n    return x - y\n", "replace": "BAD_REPLACE"}
    server.add("PURPOSE: implement", edits(good, bad), times=1)
    server.add("PURPOSE: implement", edits(ADD_MUL))
    result = await make_engine().implement(repo, improvement())
    assert result.files == ["README.md", "pkg/core.py"]
    assert "GOOD calculator" in (repo / "README.md").read_text()
    assert "def mul" in (repo / "pkg/core.py").read_text()
    retry = server.requests[1]["messages"]
    assert len(retry) == 2  # a fresh, short conversation, not the whole history
    assert "def sub(x, y)" in retry[1]["content"] and "not found" in retry[1]["content"]
    assert "GOOD calculator" not in retry[1]["content"] and "A tiny calculator library" not in retry[1]["content"]


async def test_edit_that_never_applies_is_rejected_and_the_repo_restored(repo, server, make_engine):
    good = {"path": "README.md", "search": "A tiny calculator library.", "replace": "changed"}
    bad = {"path": "pkg/core.py", "search": "no such line", "replace": "x"}
    server.add("PURPOSE: implement", edits(good, bad), times=1)
    server.add("PURPOSE: implement", edits(bad))
    with pytest.raises(ChangeRejectedError, match="still did not apply after 1 retries"):
        await make_engine(max_edit_retries=1).implement(repo, improvement())
    assert len(server.requests) == 2
    assert (repo / "README.md").read_text() == "# Calc\nA tiny calculator library.\n"
    assert git(repo, "status", "--porcelain") == ""


async def test_model_declining_is_a_rejection(repo, server, make_engine):
    server.add("PURPOSE: implement", edits(summary="would break the API"))
    with pytest.raises(ChangeRejectedError, match="would break the API"):
        await make_engine().implement(repo, improvement())


# -- transport failures, budget, replay ---------------------------------------------------------

async def test_429_storm_is_retried_then_fails_and_every_attempt_is_recorded(repo, server, make_engine):
    server.add("PURPOSE: analyze", Fault.status(429))
    engine = make_engine()
    with pytest.raises(StepError, match="model endpoint kept failing: HTTP 429"):
        await engine.analyze(repo)
    calls = engine.drain_calls()
    assert [c.attempt for c in calls] == [1, 2, 3] and len(server.requests) == 3
    assert all(c.error.startswith("HTTP 429") for c in calls)


async def test_transient_faults_are_retried_until_an_answer(repo, server, make_engine):
    server.add("PURPOSE: analyze", Fault.status(500, times=1))
    server.add("PURPOSE: analyze", Fault.malformed(), times=1)
    server.add("PURPOSE: analyze", Fault.timeout(), times=1)
    server.add("PURPOSE: analyze", DOCS)
    engine = make_engine(retry=RetryPolicy(attempts=4, initial_seconds=0.01, max_seconds=0.02), timeout=0.5)
    await engine.analyze(repo)
    calls = engine.drain_calls()
    assert [c.error is None for c in calls] == [False, False, False, True]
    assert calls[0].error.startswith("HTTP 500") and "not valid JSON" in calls[1].error
    assert calls[2].error == "timed out"


async def test_a_timed_out_call_is_charged_what_it_held(repo, server, make_engine):
    """The server received the request and may bill it: a timeout is not free, so a run whose
    calls keep timing out still stops at its budget."""
    server.add("PURPOSE: analyze", Fault.timeout(), times=1)
    server.add("PURPOSE: analyze", DOCS)
    engine = make_engine(retry=RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.02), timeout=0.5)
    await engine.analyze(repo)
    timed_out, answered = engine.drain_calls()
    assert timed_out.error == "timed out" and answered.error is None
    assert timed_out.prompt_tokens > 0 and timed_out.completion_tokens > 0


async def test_a_refused_request_fails_at_once(repo, server, make_engine):
    server.add("PURPOSE: analyze", Fault.status(401))
    engine = make_engine()
    with pytest.raises(StepError, match="refused the request") as caught:
        await engine.analyze(repo)
    assert "OPENAI_API_KEY" in caught.value.hint and len(server.requests) == 1
    assert len(engine.drain_calls()) == 1


async def test_spent_budget_stops_new_calls(repo, server, make_engine):
    server.add("PURPOSE: analyze", {"content": DOCS, "usage": {"prompt_tokens": 9_500, "completion_tokens": 100}})
    engine = make_engine(budget=Budget(max_tokens=10_000))
    await engine.analyze(repo)
    with pytest.raises(StepError, match="model budget spent before analyze: the run has used 9,600 tokens .* "
                                        "against a limit of 10,000 tokens and no cost limit"):
        await engine.analyze(repo)
    assert len(server.requests) == 1


async def test_cost_budget_counts_priced_models(repo, server, make_engine):
    server.add("PURPOSE: analyze", {"content": DOCS, "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 1}})
    engine = make_engine(model="gpt-4.1", budget=Budget(max_cost_usd=1.0))
    await engine.analyze(repo)
    assert engine.drain_calls()[0].cost_usd == pytest.approx(2.0, rel=1e-4)
    with pytest.raises(StepError, match=r"\$2\.0000, against no token limit and a limit of \$1\.00"):
        await engine.analyze(repo)


async def test_replay_answers_without_calling_the_model(repo, server, make_engine):
    server.add("PURPOSE: analyze", DOCS)
    first = make_engine()
    recorded = await first.analyze(repo)
    replay = {c.prompt_hash: c.response for c in first.drain_calls()}
    server.clear()
    server.requests.clear()
    again = make_engine(replay=replay)
    assert await again.analyze(repo) == recorded
    assert server.requests == []
    [call] = again.drain_calls()
    assert call.response == DOCS and call.prompt_tokens == 0


async def test_from_settings_points_the_client_at_the_configured_endpoint(repo, server):
    from shared.common.settings import Settings

    settings = Settings(OPENAI_BASE_URL=server.base_url, OPENAI_MODEL="local-model", REPO_PILOT_TOKEN_BUDGET=123_456)
    engine = LlmEngine.from_settings(settings, retry=FAST)
    server.add("PURPOSE: analyze", DOCS)
    await engine.analyze(repo)
    assert server.requests[0]["model"] == "local-model" and engine.caller.ledger.budget.max_tokens == 123_456


async def test_an_analysis_missing_a_document_is_taken_with_a_note(repo, server, make_engine):
    server.add("PURPOSE: analyze", "<think>short</think>" + json.dumps({"specification": "# Spec\n", "graph": "# G"}))
    engine = make_engine()
    analysis = await engine.analyze(repo)
    assert analysis.specification == "# Spec\n" and "did not write this document" in analysis.architecture
    [call] = engine.drain_calls()
    assert call.note == "the model did not write: architecture" and len(server.requests) == 1


async def test_refused_modes_fall_back_to_plain_prompting_and_the_endpoint_remembers(repo, server, make_engine):
    from tests.support.families import asked_mode

    refuse = Fault.status(400, message="response_format is not supported by this server")
    server.add(lambda r: asked_mode(r) in ("json_schema", "json_object"), refuse)
    server.add("PURPOSE: analyze", "Here are the docs:\n```json\n" + DOCS + "\n```")
    ep = endpoint(server.base_url)
    await make_engine(endpoint=ep).analyze(repo)
    assert [asked_mode(r) for r in server.requests] == ["json_schema", "json_object", "plain"]
    engine = make_engine(endpoint=ep)  # another run of the same process
    await engine.analyze(repo)
    assert [asked_mode(r) for r in server.requests[3:]] == ["plain"]
    assert ep.refused == {"json_schema", "json_object"}


async def test_a_server_refusing_the_answer_cap_is_asked_without_it_from_then_on(repo, server, make_engine):
    refuse = Fault.status(400, message="Unsupported parameter: 'max_tokens'")
    server.add(lambda r: "max_tokens" in r, refuse)
    server.add("PURPOSE: analyze", DOCS)
    engine = make_engine(endpoint=endpoint(server.base_url))
    await engine.analyze(repo)
    await engine.analyze(repo)
    assert ["max_tokens" in r for r in server.requests] == [True, False, False]
    first, *rest = engine.drain_calls()
    assert "max_tokens" in first.error and all(c.error is None for c in rest)
    assert [first.attempt, rest[0].attempt] == [1, 2]  # the refused request and its resend
