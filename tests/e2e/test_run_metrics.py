"""Issue 22's metrics shown on real runs: a merged run and a failed one, each a real `repo-pilot run`
process exporting over OTLP/HTTP to a local receiver (real protobuf). `runs_total` has both
outcomes (the failed one with its step) and every step either run went through has a duration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.events import STEPS
from tests.support.otlp import otlp_receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def attributes(point) -> dict[str, str]:
    return {a.key: a.value.string_value for a in point.attributes}


def test_a_merged_and_a_failed_run_export_both_outcomes_and_every_steps_duration(cli_env, tmp_path):
    from shared.examples import make_demo_repo

    merged_repo = make_demo_repo(tmp_path / "inventory")
    empty = tmp_path / "empty"  # no commits: the run fails at analyze
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    with otlp_receiver() as receiver:
        env = {**cli_env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        for repo, code in ((merged_repo, 0), (empty, 1)):
            ran = subprocess.run([sys.executable, "-m", "shared.app.cli", "run", str(repo), "--engine", "rules",
                                  "--local"],
                                 env=env, cwd=ROOT, capture_output=True, text=True, timeout=840)
            assert ran.returncode == code, ran.stdout + ran.stderr
        metrics = [metric for service, metric in receiver.metrics() if service == "repo-pilot"]

    outcomes = {tuple(sorted(attributes(p).items())): p.as_int for m in metrics if m.name == "runs_total"
                for p in m.sum.data_points}
    assert outcomes.get((("outcome", "completed"), ("verdict", "merged"))) == 1, outcomes
    assert outcomes.get((("outcome", "failed"), ("step", "analyze"))) == 1, outcomes

    timed = {(attributes(p)["step"], attributes(p)["status"]) for m in metrics if m.name == "step_duration_seconds"
             for p in m.histogram.data_points if p.count}
    assert {step for step, _ in timed} == set(STEPS), timed  # the merged run: every step, merge and docs too
    assert ("analyze", "failed") in timed and ("merge", "completed") in timed, timed
