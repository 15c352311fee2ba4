"""`repo-pilot generate --dataset`: three fixture tasks, the run killed after the first task, then
resumed to the end; the scripted model server answers, real git and pytest validate."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from shared.engines.generator.dataset import find_tasks, markdown, summarize
from shared.ports.errors import StepError
from tests.support.generator_script import script_feature_per_conversation
from tests.support.model_server import ScriptedModelServer
from tests.support.task_fixture import make_task

pytestmark = pytest.mark.integration


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "dataset"
    for n in (1, 2, 3):
        task = make_task(tmp_path / f"build{n}")
        (root / "calc_task").mkdir(parents=True, exist_ok=True)
        shutil.move(str(task.path), root / "calc_task" / f"task{n}")
    return root


def _generate(env, *args):
    return subprocess.Popen([sys.executable, "-m", "shared.app.cli", "generate", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.timeout(900)  # its own waits (240 s, then 600 s) are the bound; 3 tasks validated on 2 loaded cores
def test_dataset_run_resumes_after_an_interruption(dataset, tmp_path):
    out = tmp_path / "out"
    # one mutant per proof: the resume is under test here, the proofs in test_generator_proofs
    args = ["--dataset", str(dataset), "--output", str(out), "--backend", "local", "--concurrency", "1",
            "--step-limit", "10", "--model", "scripted-model", "--mutants", "1"]
    with ScriptedModelServer() as server:
        script_feature_per_conversation(server)
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "test-key", "COLUMNS": "200"}
        first = _generate(env, *args)
        done = out / "calc_task" / "task1" / "attempt_1" / "result.json"
        deadline = time.monotonic() + 240
        while not done.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done.exists(), first.communicate()[0] if first.poll() is not None else "no result in time"
        os.killpg(first.pid, signal.SIGKILL)  # interrupted, whatever it was doing
        first.wait()
        assert not (out / "summary.md").exists()
        asked_before = len(server.requests)

        second = _generate(env, *args)
        output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output
    rows = {r["task"]: r for r in json.loads((out / "summary.json").read_text())}
    assert sorted(rows) == ["calc_task/task1", "calc_task/task2", "calc_task/task3"]
    assert rows["calc_task/task1"]["resumed"] == 1  # read back, not run again
    assert [rows[k]["valid"] for k in sorted(rows)] == [1, 1, 1]
    assert all(r["conflicts"] == [2, 3] and r["attempts"] == 1 for r in rows.values())
    # task1's four model turns happened once; the resumed run asked only for tasks 2 and 3 (and
    # whatever of task 2 the first run had started before it was killed)
    assert len(server.requests) - asked_before <= 8
    summary = (out / "summary.md").read_text()
    assert "| calc_task/task1 | 1 | 1 | 2, 3 |" in summary
    assert "calc_task/task3" in output and "resumed" in output


def test_find_tasks_and_a_folder_without_tasks(dataset, tmp_path):
    assert [p.name for p in find_tasks(dataset)] == ["task1", "task2", "task3"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(StepError, match="holds no task"):
        find_tasks(tmp_path / "empty")


def test_summary_rows_from_results():
    results = [{"valid": False, "cost_usd": 0.5, "duration_s": 2, "validation": {"conflicting_features": [1]}},
               {"valid": True, "cost_usd": 0.25, "duration_s": 3, "validation": {"conflicting_features": [2, 3]}}]
    row = summarize("t", results, resumed=1)
    assert (row.attempts, row.valid, row.conflicts, row.cost_usd, row.time_s) == (2, 1, [2, 3], 0.75, 5.0)
    assert markdown([row]).splitlines()[2] == "| t | 2 | 1 | 2, 3 | 0.7500 | 5.0 |"


def test_dataset_with_a_mirror_folder_runs_offline_and_says_which_repository(tmp_path):
    # setup.sh names a host that cannot resolve: the only way to the base is the mirror folder
    task = make_task(tmp_path / "build")
    root = tmp_path / "dataset"
    (root / "calc_task").mkdir(parents=True)
    shutil.move(str(task.path), root / "calc_task" / "task1")
    setup = root / "calc_task" / "task1" / "setup.sh"
    upstream = task.repo_url
    setup.write_text(setup.read_text().replace(upstream, "https://example.invalid/acme/calc.git"))
    mirrors = tmp_path / "mirrors"
    mirrors.mkdir()
    subprocess.run(["git", "clone", "--quiet", "--mirror", upstream, str(mirrors / "calc.git")], check=True)
    out = tmp_path / "out"
    with ScriptedModelServer() as server:
        script_feature_per_conversation(server)
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "test-key", "COLUMNS": "300"}
        run = _generate(env, "--dataset", str(root), "--repo-path", str(mirrors), "--output", str(out),
                        "--backend", "local", "--step-limit", "10", "--model", "scripted-model")
        output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output
    assert f"calc_task/task1: repository {mirrors / 'calc.git'} (mirror in --repo-path" in output
    (row,) = json.loads((out / "summary.json").read_text())
    assert row["valid"] == 1 and row["repository"].startswith(str(mirrors / "calc.git"))
    assert row["cost_usd"] is None  # scripted-model has no price: unknown, not $0
    assert "| unpriced |" in (out / "summary.md").read_text()


def test_a_mirror_folder_without_the_task_repository_is_a_clear_error(tmp_path):
    from shared.engines.generator.dataset import task_repository

    task = make_task(tmp_path / "build")
    (tmp_path / "mirrors").mkdir()
    with pytest.raises(StepError, match="neither a git repository nor a folder holding a mirror"):
        task_repository(task, tmp_path / "mirrors")
    assert task_repository(task, task.repo_url)[0] == task.repo_url  # one repository for every task
