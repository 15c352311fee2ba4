"""`repo-pilot run --no-local` against a database and bus where nothing runs (issue 22): one
line saying what to start, exit 1, and the request ended so the repository is not held."""

from __future__ import annotations

import pytest

from tests.conftest import make_git_repo
from tests.integration.test_cli import cli

pytestmark = pytest.mark.integration


def test_run_without_services_says_what_to_start_and_holds_nothing(cli_env, tmp_path):
    repo = make_git_repo(tmp_path / "target", {"app.py": "x = 1\n"})

    first = cli(cli_env, "run", str(repo), "--no-local", check=False)
    assert first.returncode == 1
    said = [line for line in first.stderr.splitlines() if "no services or projector" in line]
    assert len(said) == 1 and "`repo-pilot up`" in said[0] and "without --no-local" in said[0]
    assert "Traceback" not in first.stderr

    again = cli(cli_env, "run", str(repo), "--no-local", check=False)  # not "a run … is in progress"
    assert again.returncode == 1 and "in progress" not in again.stderr
    assert "no services or projector" in again.stderr
    run_id = next(w for w in first.stderr.split() if w.startswith("run-")).rstrip(".")
    assert "PipelineFailed" in cli(cli_env, "events", run_id).stdout
