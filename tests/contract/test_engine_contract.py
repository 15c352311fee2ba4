"""The Engine port: one contract suite, run against the offline rules engine (real ruff, real
validation in a local sandbox), the llm engine (the real openai client over HTTP to the scripted
model server, answering as a sensible model would) and the scripted fake the handler unit tests
use. What the suite checks is what every engine promises; how each one gets there is its own."""

from __future__ import annotations

import json

import openai
import pytest

from shared.adapters.git import git
from shared.adapters.sandbox import LocalSandbox
from shared.engines.llm import LlmEngine
from shared.engines.llm_client import RetryPolicy
from shared.engines.rules import RulesEngine
from shared.events import Improvement
from shared.ports.engine import Analysis, Engine, GeneratedTests, ModelReview
from shared.ports.errors import ChangeRejectedError
from tests.conftest import make_git_repo
from tests.support.fakes import FakeEngine
from tests.support.model_server import ScriptedModelServer

# An unused import: something every engine can find and fix.
FILES = {"app.py": "import os\nimport sys\n\n\ndef main():\n    return os.getcwd()\n"}
FIXED = FILES["app.py"].replace("import sys\n", "")


def script_model(server: ScriptedModelServer) -> None:
    """What a sensible model answers for this repository: one compliance idea (and one of another
    category, which the engine must not return when only compliance is asked), the edit for it,
    a refusal for the file that is not there, and a review."""
    server.add("PURPOSE: analyze", json.dumps({"specification": "# Spec\napp prints the cwd",
                                               "graph": "- app", "architecture": "# Arch\none module"}))
    server.add("PURPOSE: suggest:compliance", json.dumps({"improvements": [
        {"title": "drop an unused import", "rationale": "sys is never used", "files": ["app.py"],
         "changes": "remove `import sys`"},
        {"title": "name the entry point", "rationale": "main is the API", "files": ["app.py"],
         "changes": "add __all__"}]}))
    server.add("PURPOSE: suggest:", json.dumps({"improvements": [
        {"title": "not asked for", "rationale": "-", "files": ["app.py"], "changes": "-"}]}))
    server.add("PURPOSE: implement:compliance-nothing",
               json.dumps({"edits": [], "summary": "missing.py does not exist"}))
    server.add("PURPOSE: implement:", json.dumps({"edits": [
        {"path": "app.py", "search": "import sys\n", "replace": ""}], "summary": "dropped sys"}))
    server.add("PURPOSE: review", json.dumps({"overall": 8, "scores": {}, "summary": "a clean removal"}))


@pytest.fixture(params=[pytest.param("rules", marks=pytest.mark.integration),
                        pytest.param("llm", marks=pytest.mark.integration),
                        pytest.param("fake", marks=pytest.mark.unit)])
def engine(request, tmp_path):
    if request.param == "rules":
        yield RulesEngine(home=tmp_path / "home", tools_home=tmp_path / "tools", sandbox=LocalSandbox())
        return
    if request.param == "llm":
        with ScriptedModelServer() as server:
            script_model(server)
            client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
            yield LlmEngine(client, "gpt-4.1-mini", retry=RetryPolicy(attempts=2, initial_seconds=0.01,
                                                                      max_seconds=0.02), timeout=10.0)
        return
    yield FakeEngine(
        improvements=[
            Improvement(id="compliance-unused", category="compliance", title="drop an unused import",
                        rationale="F401", files=["app.py"]),
            Improvement(id="features-other", category="features", title="not asked for", rationale="-",
                        files=["app.py"]),
        ],
        edits={"compliance-unused": {"app.py": FIXED}, "compliance-nothing": "missing.py does not exist"})


@pytest.fixture
def repo(tmp_path):
    return make_git_repo(tmp_path / "repo", FILES)


def test_implements_the_port(engine):
    assert isinstance(engine, Engine) and engine.name in ("rules", "llm")


async def test_analyze_then_suggest_only_what_was_asked_and_implement_it_in_place(engine, repo):
    analysis = await engine.analyze(repo)
    assert isinstance(analysis, Analysis)
    assert analysis.specification and analysis.graph and analysis.architecture

    improvements = await engine.suggest(repo, analysis, ["compliance"])
    assert improvements and {i.category for i in improvements} == {"compliance"}
    assert len({i.id for i in improvements}) == len(improvements)

    fix = next(i for i in improvements if "app.py" in i.files)
    done = await engine.implement(repo, fix)
    assert done.files and all((repo / f).is_file() for f in done.files)
    assert "app.py" in git(repo, "status", "--porcelain")  # edited in place, not committed
    assert "import sys" not in (repo / "app.py").read_text()


async def test_an_improvement_it_cannot_make_is_rejected_with_a_reason(engine, repo):
    impossible = Improvement(id="compliance-nothing", category="compliance", title="fix what is not there",
                             rationale="-", files=["missing.py"], rule="lint:F401")
    with pytest.raises(ChangeRejectedError) as caught:
        await engine.implement(repo, impossible)
    assert caught.value.reason
    assert git(repo, "status", "--porcelain") == ""  # a rejection leaves the copy as it was


async def test_review_scores_one_to_ten_and_tests_come_in_groups(engine, repo):
    base = git(repo, "rev-parse", "HEAD")
    review = await engine.review(repo, base, "HEAD", {"findings_before": {}, "findings_after": {}})
    assert isinstance(review, ModelReview) and 1.0 <= review.overall <= 10.0
    generated = await engine.write_tests(repo, [], ["compliance"])
    assert isinstance(generated, GeneratedTests)
    assert all(not rel.startswith("/") for files in generated.groups.values() for rel in files)
    assert isinstance(engine.drain_calls(), list) and engine.drain_calls() == []
