"""The CLI leaves the generator (and the openai SDK it imports) out of commands that do not need it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared.app.cli import _sole_command

pytestmark = pytest.mark.unit

PROBE = "import sys; sys.argv = {argv!r}; import shared.app.cli; print('openai' in sys.modules)"


def _imports_openai(argv: list[str]) -> bool:
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, check=True)
    return done.stdout.strip() == "True"


def test_the_command_word_comes_after_the_apps_own_options():
    assert _sole_command(["repo-pilot", "--env-file", "runs", "status", "run-1"]) == "status"
    assert _sole_command(["repo-pilot", "--help"]) is None
    assert _sole_command(["repo-pilot", "--help", "status"]) is None  # the app's help


def test_runs_and_status_do_not_import_the_model_sdk_but_generate_and_help_do():
    assert not _imports_openai(["repo-pilot", "runs"])
    assert not _imports_openai(["repo-pilot", "status", "run-1"])
    assert not _imports_openai(["repo-pilot", "servers", "stop"])  # a command group's command
    assert _imports_openai(["repo-pilot", "generate", "--help"])
    assert _imports_openai(["repo-pilot", "--help"])
    assert _imports_openai(["repo-pilot", "--help", "status"])  # the app's help lists `generate` too


LOADED = "import sys; sys.argv = {argv!r}; import shared.app.cli; print(sorted(m for m in {mods!r} if m in sys.modules))"
ONLY_SOME_COMMANDS = ["rich.live", "shared.policy.review", "shared.adapters.run_log"]


def test_runs_and_status_leave_out_what_only_following_a_run_needs():
    """The live table, the review policy (test results) and the run log load when used, not at start."""
    for argv in (["repo-pilot", "runs"], ["repo-pilot", "status", "run-1"]):
        done = subprocess.run([sys.executable, "-c", LOADED.format(argv=argv, mods=ONLY_SOME_COMMANDS)],
                              capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "[]", (argv, done.stdout)


def test_a_run_with_test_results_still_renders_them():
    from rich.console import Console

    from shared.app import render

    console = Console(record=True, width=160)
    group = {"passed": 0, "failed": 0, "errors": 1, "skipped": 0, "total": 1, "output": "could not run: no tests"}
    run = {"run_id": "run-1", "status": "FAILED", "error": "", "score": None, "branch": None, "pr_url": None,
           "tokens": 0, "cost_usd": None, "merged": False, "passed": None, "tests": {"own_before": group, "own_after": group}}
    render.print_verdict(console, run, [])
    assert "could not run" in console.export_text()


def _loaded_after(code: str, mods: list[str]) -> list[str]:
    """Which of `mods` a fresh interpreter has loaded after running `code`."""
    probe = f"import json, sys\n{code}\nprint(json.dumps([m for m in {mods!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_the_read_models_load_without_opentelemetry():
    """`runs` and `status` catch the projections up first; when nothing is pending no batch is
    counted, so OpenTelemetry (loaded by fold.record_metrics to count one) stays out."""
    assert _loaded_after("import shared.store.projections", ["opentelemetry", "shared.common.telemetry"]) == []


def test_a_run_without_test_results_renders_without_the_review_policy():
    code = """
import io
from rich.console import Console
from shared.app import render
run = {"run_id": "run-1", "status": "RUNNING", "error": "", "score": None, "branch": None, "pr_url": None,
       "tokens": 0, "cost_usd": None, "merged": False, "passed": None, "tests": None}
render.print_run(Console(file=io.StringIO()), run, [])
"""
    assert _loaded_after(code, ["shared.policy.review"]) == []


def test_the_event_models_are_built_when_first_used_not_at_import():
    """Their validators (defer_build) are built by the first event made or parsed, so a command that
    reads projections never pays for the ~40 it does not use."""
    code = """
import shared.events as e
print(e.Envelope.__pydantic_complete__, e.PipelineRequested.__pydantic_complete__, e.StepFailed.__pydantic_complete__)
e.make_event(e.PipelineRequested(repo="/srv/repo"), e.new_run_stream())
print(e.Envelope.__pydantic_complete__, e.PipelineRequested.__pydantic_complete__, e.StepFailed.__pydantic_complete__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "False", "True", "True", "False"]


BUILT = ("import sys; sys.argv = {argv!r}; import typer.main; from shared.app.cli import app; "
         "print(' '.join(sorted(typer.main.get_command(app).commands)))")


def _built_commands(argv: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", BUILT.format(argv=argv)], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_runs_and_status_build_only_their_own_command():
    assert _built_commands(["repo-pilot", "runs"]) == ["runs"]
    assert _built_commands(["repo-pilot", "--env-file", "x.env", "status", "run-1"]) == ["status"]


def test_the_apps_help_and_groups_still_build_every_command():
    for argv in (["repo-pilot", "--help", "status"], ["repo-pilot", "servers", "stop"], ["repo-pilot", "bogus"]):
        assert {"runs", "status", "servers", "projections"} <= set(_built_commands(argv)), argv
