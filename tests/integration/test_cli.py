"""The CLI round trip through real processes: request -> events -> status."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration


def cli(env, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "shared.app.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"repo-pilot {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_request_events_status_round_trip(cli_env, tmp_path):
    repo = make_git_repo(tmp_path / "target", {"app.py": "print('hi')\n"})
    run_id = cli(cli_env, "request", str(repo), "--categories", "security,compliance", "--threshold", "8").stdout.strip()
    assert run_id.startswith("run-")

    lines = cli(cli_env, "events", run_id, "--json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events] == ["PipelineRequested"]
    assert events[0]["data"]["repo"] == str(repo)
    assert events[0]["data"]["categories"] == ["security", "compliance"]
    assert events[0]["data"]["threshold"] == 8.0
    assert events[0]["data"]["engine"] == "rules"  # no model configured

    status = cli(cli_env, "status", run_id).stdout
    assert run_id in status and "RUNNING" in status and "analyze (rules engine)" in status
    assert run_id in cli(cli_env, "runs").stdout


def test_request_on_a_non_repository_fails_before_appending(cli_env, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = cli(cli_env, "request", str(plain), check=False)
    assert proc.returncode == 2
    assert "not a git repository" in proc.stderr
    missing = cli(cli_env, "request", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    assert cli(cli_env, "events", "--json").stdout.strip() == ""


def test_unreachable_configured_server_is_reported(cli_env, tmp_path):
    env = {**cli_env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    proc = cli(env, "runs", check=False)
    assert proc.returncode == 2
    assert "cannot reach PostgreSQL" in proc.stderr and "DATABASE_URL" in proc.stderr


@pytest.mark.e2e
def test_run_follows_to_the_end_and_every_event_belongs_to_one_trace(cli_env, tmp_path):
    """`repo-pilot run` on real servers (services in-process) with telemetry on: exit 0, a verdict,
    and one trace per run: every stored event's traceparent carries the run's trace id."""
    from shared.examples import make_demo_repo

    repo = make_demo_repo(tmp_path / "inventory")
    # Nothing listens there: export fails quietly; what we check is the propagation in the log.
    env = {**cli_env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    proc = cli(env, "run", str(repo), "--local", "--categories", "security,compliance", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "merged" in proc.stdout and "score" in proc.stdout and "run log:" in proc.stdout
    assert_complete_run_log(proc.stdout, "PipelineCompleted", "DocsUpdated")

    events = [json.loads(line) for line in cli(cli_env, "events", "--json").stdout.splitlines()]
    assert events[0]["type"] == "PipelineRequested" and events[-1]["type"] == "PipelineCompleted"
    parents = [e["metadata"].get("traceparent") for e in events]
    assert all(parents), [e["type"] for e, p in zip(events, parents, strict=True) if not p]
    trace_ids = {p.split("-")[1] for p in parents}
    assert len(trace_ids) == 1
    assert len({p.split("-")[2] for p in parents}) > 1  # steps nest under their own spans


def test_scaffold_dry_run_lists_missing_files_and_changes_nothing(cli_env, tmp_path):
    from tests.support.rules_repos import WIDGETS, make_repo

    repo = make_repo(tmp_path / "widgets", WIDGETS)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    out = cli(cli_env, "scaffold", str(repo), "--dry-run").stdout
    assert ".github/workflows/ci.yml" in out and ".pre-commit-config.yaml" in out
    assert "widgets/core.py" not in out  # existing files are never scaffold targets
    assert subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout == head
    assert cli(cli_env, "events", "--json").stdout.strip() == ""


@pytest.mark.e2e
def test_scaffold_dry_run_lists_exactly_what_scaffold_writes(cli_env, tmp_path):
    """A project that declares no license: the real scaffold skips LICENSE (choosing one is the
    owner's call), so the dry run lists it as not written, with the reason; every file it lists
    as written is what the real scaffold's improvement commits hold, no more, no less."""
    from tests.support.rules_repos import PYPROJECT, WIDGETS, make_repo

    unlicensed = PYPROJECT.replace('license = { text = "MIT" }\n', "")
    assert unlicensed != PYPROJECT
    repo = make_repo(tmp_path / "widgets", {**WIDGETS, "pyproject.toml": unlicensed})
    out = cli(cli_env, "scaffold", str(repo), "--dry-run").stdout
    planned = {f for line in out.splitlines() if line.startswith("+ ")
               for f in line[2:].split("  ")[0].split(", ")}
    (license_line,) = [line for line in out.splitlines() if line.startswith("- LICENSE")]
    assert "not written: no license is declared" in license_line
    assert "LICENSE" not in planned and ".github/workflows/ci.yml" in planned

    proc = cli(cli_env, "scaffold", str(repo), "--local", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = subprocess.run(["git", "-C", str(repo), "log", "--all", "--grep", "Repo-Pilot-Improvement:",
                              "--name-only", "--format="], capture_output=True, text=True, check=True).stdout
    assert {f for f in written.splitlines() if f} == planned


def assert_complete_run_log(stdout: str, last: str, *also: str) -> list[dict]:
    """The run log the CLI printed exists and ends with the run's last event."""
    path = next(line.split("run log:", 1)[1].strip() for line in stdout.splitlines() if "run log:" in line)
    logged = json.loads(open(path).read())
    types = [e["type"] for e in logged]
    assert types[-1] == last, types[-4:]
    assert set(also) <= set(types), types
    return logged


def test_dirty_working_tree_is_refused_before_any_event(cli_env, tmp_path):
    repo = make_git_repo(tmp_path / "dirty", {"app.py": "print('hi')\n"})
    (repo / "app.py").write_text("print('changed')\n")
    proc = cli(cli_env, "request", str(repo), check=False)
    assert proc.returncode == 2
    assert "uncommitted changes" in proc.stderr and "app.py" in proc.stderr and "stash" in proc.stderr
    assert cli(cli_env, "events", "--json").stdout.strip() == ""
    (repo / "new_untracked.py").write_text("x = 1\n")  # untracked files are not merged over: fine
    (repo / "app.py").write_text("print('hi')\n")
    assert cli(cli_env, "request", str(repo)).stdout.startswith("run-")


def test_a_failed_run_shows_its_hint_and_a_complete_run_log(cli_env, tmp_path):
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)  # a repository with no commits
    proc = cli(cli_env, "run", str(empty), "--local", "--timeout", "90", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no commits" in proc.stdout and "hint: Commit the code first" in proc.stdout
    assert "branch" not in proc.stdout  # nothing was pushed: no branch to name
    logged = assert_complete_run_log(proc.stdout, "PipelineFailed", "StepFailed")
    assert logged[-1]["data"]["hint"]


def test_request_starts_the_runs_trace_and_sends_it(cli_env, tmp_path):
    """`repo-pilot request` exports its span before it returns: the run's trace starts at the
    request (the root every service's span continues), not at the analyzer."""
    from tests.support.otlp import otlp_receiver

    repo = make_git_repo(tmp_path / "target", {"app.py": "print('hi')\n"})
    with otlp_receiver() as receiver:
        env = {**cli_env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        run_id = cli(env, "request", str(repo)).stdout.strip()
        spans = receiver.spans()
    (requested,) = [span for service, span in spans if span.name == "run requested" and service == "repo-pilot"]
    assert {a.key: a.value.string_value for a in requested.attributes}["pilot.stream_id"] == run_id
    event = json.loads(cli(cli_env, "events", run_id, "--json").stdout.splitlines()[0])
    assert event["metadata"]["traceparent"].split("-")[1] == requested.trace_id.hex()


def test_a_bad_setting_is_one_line_naming_the_variable_and_the_allowed_values(cli_env):
    # No COLUMNS: stderr is a pipe, as in a CI log, where rich would wrap at 80 columns.
    env = {k: v for k, v in cli_env.items() if k != "COLUMNS"}
    proc = cli({**env, "REPO_PILOT_ISOLATION": "bogus"}, "runs", check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "REPO_PILOT_ISOLATION='bogus'" in line and "'mountns'" in line and "Traceback" not in proc.stderr


def test_make_run_takes_a_path_with_a_space(tmp_path):
    """`make run REPO="/path/my repo"` reaches repo-pilot as one argument (dry: make -n)."""
    import shlex
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(["make", "-n", "-o", ".venv/.installed", "run", f"REPO={tmp_path}/my repo"],
                          cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stdout.splitlines() if "repo-pilot run" in line]
    assert shlex.split(line)[2] == f"{tmp_path}/my repo"


def test_status_shortens_a_long_detail_at_a_word_and_full_shows_it(cli_env, tmp_path, database_url, db_schema):
    """A bead's reason of 300 characters on a 120-column terminal: `status RUN` keeps whole words
    and ends with an ellipsis; `status RUN --full` shows the whole reason."""
    import asyncio

    from shared.events import StepFailed, make_event
    from shared.store import PostgresEventStore

    repo = make_git_repo(tmp_path / "target", {"app.py": "print('hi')\n"})
    run_id = cli(cli_env, "request", str(repo)).stdout.strip()
    reason = " ".join(f"finding-{n:02d}" for n in range(30)) + " LAST-WORD"

    async def fail_analyze():
        store = await PostgresEventStore.connect(database_url, schema=db_schema)
        try:
            await store.append(run_id, [make_event(StepFailed(step="analyze", error=reason), run_id)], 1)
        finally:
            await store.close()

    asyncio.run(fail_analyze())
    env = {**cli_env, "COLUMNS": "120"}
    short = cli(env, "status", run_id).stdout
    assert "finding-00" in short and "…" in short and "LAST-WORD" not in short
    assert all(len(line) <= 120 for line in short.splitlines())
    cells = " ".join(line.split("│")[4].strip() for line in short.splitlines() if line.count("│") == 5)
    assert all(word.startswith("finding-") and len(word) == 10 for word in cells.split()[:-1])  # none cut
    full = cli(env, "status", run_id, "--full").stdout
    assert "LAST-WORD" in full and "finding-29" in full
