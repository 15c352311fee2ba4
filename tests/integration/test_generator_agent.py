"""`generate` end to end: the real openai client drives our agent against the scripted model server,
the agent edits a real checkout through the sandbox, and the attempt is validated for real."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from services.generator.handlers import on_feature_generated, on_feature_generation_requested, on_feature_prompt_built
from shared.app.generate import generate
from shared.common.settings import Settings
from shared.events import Envelope, make_event, new_gen_stream
from shared.events.gen import FeatureGenerationRequested
from shared.ports.errors import StepError
from tests.support.fakes import InMemoryEventStore, fake_deps
from tests.support.generator_script import FEATURE_MD, _bash, script_feature
from tests.support.model_server import ScriptedModelServer
from tests.support.task_fixture import make_task

pytestmark = pytest.mark.integration

app = typer.Typer()
app.command("generate")(generate)
app.command("noop")(lambda: None)

@pytest.fixture
def bus_env(cli_env, monkeypatch):
    """`generate` runs its jobs through the store and the bus: this test's servers, schema and stream."""
    for key in ("NATS_URL", "DATABASE_URL", "REPO_PILOT_DB_SCHEMA", "REPO_PILOT_STREAM", "REPO_PILOT_SUBJECT_PREFIX",
                "REPO_PILOT_HOME"):
        monkeypatch.setenv(key, cli_env[key])
    return cli_env


@pytest.fixture
def server():
    with ScriptedModelServer() as s:
        yield s


@pytest.fixture
def task(tmp_path):
    return make_task(tmp_path / "fixture")


def test_generate_end_to_end_writes_a_valid_attempt(task, server, tmp_path, monkeypatch, bus_env):
    script_feature(server)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", "--task", str(task.path), "--backend", "local",
                                      "--output", str(out), "--model", "scripted-model", "--step-limit", "10",
                                      "--local"])
    assert result.exit_code == 0, result.output
    # the same path as request-generation: the job is in the event store, its beads done by the consumer
    events = _events(bus_env)
    assert [e["type"] for e in events if not e["type"].startswith("Step")] == [
        "FeatureGenerationRequested", "FeaturePromptBuilt", "FeatureGenerated", "FeatureValidated"]
    assert [e["data"]["step"] for e in events if e["type"] == "StepCompleted"] == ["prompt", "agent", "validate"]
    folder = out / "attempt_1"
    assert {p.name for p in folder.iterdir()} >= {"feature.patch", "tests.patch", "feature.md", "result.json",
                                                  "trajectory.json"}
    assert (folder / "feature.md").read_text() == FEATURE_MD
    assert "+++ b/calc/ops.py" in (folder / "feature.patch").read_text()
    assert "tests/test_ops.py" not in (folder / "feature.patch").read_text()
    assert "+++ b/tests/test_ops.py" in (folder / "tests.patch").read_text()
    outcome = json.loads((folder / "result.json").read_text())
    assert outcome["valid"] is True, outcome["reason"]
    assert outcome["steps"] == 4 and outcome["agent_stop"] == "submitted"
    assert outcome["files"]["dropped"] == ["scratch_notes.txt"]
    assert outcome["validation"]["conflicting_features"] == [2, 3]
    assert outcome["validation"]["tests"]["counts"]["passed"] == 5
    trajectory = json.loads((folder / "trajectory.json").read_text())
    assert [a["tool"] for s in trajectory["steps"] for a in s["actions"]] == ["bash", "bash", "bash", "submit"]
    assert "5 passed" in trajectory["steps"][2]["actions"][0]["output"]
    # the model saw the prompt with the hot spots and got the tools
    first = server.requests[0]
    assert "calc/ops.py lines 1-9: touched by feature(s) 1, 2" in first["messages"][1]["content"]
    assert [t["function"]["name"] for t in first["tools"]] == ["bash", "submit"]
    # scripted-model is in no price list: its cost is unknown, never $0, and the output says so
    assert outcome["cost_usd"] is None and "has no price in the price list" in result.output
    assert "unpriced" in result.output
    # --prompt-only writes byte for byte what the agent got, unwrapped on a narrow terminal
    shown = subprocess.run([sys.executable, "-m", "shared.app.generate", "--task", str(task.path),
                            "--prompt-only"], capture_output=True, env={**os.environ, "COLUMNS": "40"},
                           cwd=Path(__file__).parents[2], check=True).stdout
    assert shown == first["messages"][1]["content"].encode()


def test_task_relative_to_the_dataset_folder_and_debug_are_accepted(task, monkeypatch):
    monkeypatch.chdir(task.path.parents[2])  # the folder holding dataset/
    result = CliRunner().invoke(app, ["generate", "--task", "calc_task/task1", "--prompt-only", "--debug"])
    assert result.exit_code == 0, result.output
    assert "Hot spots" in result.output


def test_agent_that_never_submits_stops_at_the_step_limit(task, server, tmp_path, monkeypatch, bus_env):
    server.add(lambda request: True, _bash("ls"))
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", "--task", str(task.path), "--backend", "local",
                                      "--output", str(out), "--step-limit", "3", "--local"])
    assert result.exit_code == 1, result.output
    outcome = json.loads((out / "attempt_1" / "result.json").read_text())
    assert outcome["valid"] is False and outcome["steps"] == 3
    assert "agent did not submit (step_limit)" in outcome["reason"]
    assert "changed nothing" in outcome["reason"]
    assert len(server.requests) == 3


async def test_handlers_emit_prompt_generated_and_validated_events(task, server, tmp_path):
    """The three handlers in turn, each reading the job's stream as the service does, with the real
    generator steps (the real openai client against the scripted server)."""
    script_feature(server)
    settings = Settings(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="test-key", OPENAI_MODEL="scripted-model")
    store = InMemoryEventStore()
    deps = fake_deps(tmp_path, {}, settings=settings, store=store)
    stream = new_gen_stream()
    request = make_event(FeatureGenerationRequested(task_dir=str(task.path), output_dir=str(tmp_path / "out"),
                                                    backend="local", step_limit=10), stream)
    await store.append(stream, [request], 0)
    events, event = [], request
    for handler in (on_feature_generation_requested, on_feature_prompt_built, on_feature_generated):
        (event,) = await handler(event, deps)
        await store.append(stream, [event])
        events.append(event)
    assert [e.type for e in events] == ["FeaturePromptBuilt", "FeatureGenerated", "FeatureValidated"]
    assert [e.causation_id for e in events] == [request.event_id, events[0].event_id, events[1].event_id]
    prompt, generated, validated = (e.data for e in events)
    assert [h.features for h in prompt.hotspots] == [[1, 2], [2], [3]]
    assert generated.feature_md == FEATURE_MD and generated.steps == 4 and generated.dropped == ["scratch_notes.txt"]
    assert validated.valid and validated.tests_passed and validated.passed == 5
    assert [c.feature for c in validated.conflicts if c.status == "conflict"] == [2, 3]
    assert Envelope.from_json(events[-1].to_json()).data == validated  # survives the store round trip
    assert json.loads((tmp_path / "out" / "attempt_1" / "result.json").read_text())["valid"] is True


async def test_a_bad_task_dir_is_a_step_error_of_the_prompt_step(tmp_path):
    request = make_event(FeatureGenerationRequested(task_dir=str(tmp_path / "missing"), output_dir=str(tmp_path)),
                         new_gen_stream())
    with pytest.raises(StepError, match="task directory not found"):
        await on_feature_generation_requested(request, fake_deps(tmp_path, {}, settings=Settings()))


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "shared.app.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _events(env) -> list[dict]:
    out = _cli(env, "events", "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_request_generation_runs_over_the_bus_and_follows_the_job(task, server, tmp_path, cli_env):
    """`repo-pilot request-generation`: FeatureGenerationRequested appended, the generator service
    (in-process, real NATS JetStream and Postgres) runs the attempt, the CLI follows the beads."""
    script_feature(server)
    env = {**cli_env, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "test-key",
           "OPENAI_MODEL": "scripted-model"}
    out = tmp_path / "out"
    proc = _cli(env, "request-generation", "--task", str(task.path), "--backend", "local", "--output", str(out),
                "--step-limit", "10", "--local")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "generation jobs" in proc.stdout and "COMPLETED" in proc.stdout
    assert json.loads((out / "attempt_1" / "result.json").read_text())["valid"] is True
    events = _events(cli_env)
    types = [e["type"] for e in events]
    assert types[0] == "FeatureGenerationRequested" and types[-1] == "FeatureValidated"
    assert [e["data"]["step"] for e in events if e["type"] == "StepStarted"] == ["prompt", "agent", "validate"]
    assert len({e["stream_id"] for e in events}) == 1 and events[0]["stream_id"].startswith("gen-")
    status = _cli(cli_env, "status", events[0]["stream_id"])
    assert status.returncode == 0
    for bead in ("prompt", "agent", "validate"):
        assert re.search(rf"{bead}\s+│\s+COMPLETED", status.stdout), status.stdout


def test_request_generation_failure_lands_on_the_agent_bead(task, tmp_path, cli_env):
    out = tmp_path / "out"  # no model endpoint configured: the agent step cannot start
    proc = _cli(cli_env, "request-generation", "--task", str(task.path), "--backend", "local", "--output", str(out),
                "--local", "--timeout", "120")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    events = _events(cli_env)
    failed = [e for e in events if e["type"] == "StepFailed"]
    assert [e["data"]["step"] for e in failed] == ["agent"]
    assert "no model endpoint" in failed[0]["data"]["error"]
    status = _cli(cli_env, "status", events[0]["stream_id"]).stdout
    assert re.search(r"prompt\s+│\s+COMPLETED", status) and re.search(r"agent\s+│\s+FAILED", status), status


def test_request_generation_refuses_a_bad_task_before_appending(tmp_path, cli_env):
    proc = _cli(cli_env, "request-generation", "--task", str(tmp_path / "missing"), "--local")
    assert proc.returncode == 2 and "task directory not found" in proc.stderr
