"""The rules engine fixes real findings end to end (real NATS, Postgres, git, codemodder, pytest)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from shared.adapters.analyzers import DEFAULT_SELECT, run_ruff
from shared.events import PipelineRequested
from tests.support.pipeline import run_pipeline
from tests.support.rules_repos import TOOLS, make_repo

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def _pytest(repo, *args) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=repo,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip


async def test_textbook_findings_are_fixed_merged_with_green_tests_and_tests_of_the_change(settings, tmp_path):
    repo = make_repo(tmp_path / "acme", TOOLS)
    base = _git(repo, "rev-parse", "main")
    findings_before = {f.code for f in run_ruff(repo, ["acme/tools.py"], DEFAULT_SELECT, "py310")}
    assert {"S602", "S311", "S113", "F401", "E711"} <= findings_before

    request = PipelineRequested(repo=str(repo), engine="rules", categories=["security", "compliance"])
    run, beads, events = await run_pipeline(settings, request, timeout=900)

    assert run["status"] == "COMPLETED", run["error"]
    applied = {e.data.improvement_id for e in events if e.type == "ChangeApplied"}
    rejected = {e.data.improvement_id: e.data.reason for e in events if e.type == "ChangeRejected"}
    assert {"security-codemod-subprocess-shell-false", "security-secure-random",
            "security-codemod-add-requests-timeouts", "compliance-lint-f",
            "compliance-lint-e7-unsafe"} <= applied, rejected  # fmt: skip
    [suggested] = [e.data for e in events if e.type == "ImprovementsSuggested"]
    shell = next(i for i in suggested.improvements if i.id == "security-codemod-subprocess-shell-false")
    assert "pixee codemod `pixee:python/subprocess-shell-false`" in shell.rationale and "S602" in shell.rationale
    # each change records what the project's own checks said about it (here: none configured, so
    # ruff-format is not among them and nothing was repaired)
    checks = [e.data.checks for e in events if e.type == "ChangeApplied"]
    assert checks and all(c is not None and c.repaired == [] for c in checks), checks

    [tests] = [e.data for e in events if e.type == "TestsCompleted"]
    assert tests.own_before.passed == tests.own_after.passed == 4 and tests.own_after.failed == 0
    groups = {g.group: g for g in tests.groups}
    assert groups["security"].passed >= 3 and groups["security"].failed == 0, groups["security"].output
    assert groups["compliance"].passed >= 2 and groups["compliance"].failed == 0, groups["compliance"].output

    [review] = [e.data for e in events if e.type == "ChangesReviewed"]
    assert review.passed and review.overall >= 7.0, review.summary
    reasons = review.signals["reasons"]
    assert any("findings removed" in r for r in reasons) and any("own tests pass" in r for r in reasons)
    assert any("generated tests of the change pass" in r for r in reasons)
    assert run["merged"] is True, run["error"]

    # on the default branch now: the findings are gone, the own suite is green, the tests are committed
    after = {f.code for f in run_ruff(repo, ["acme/tools.py"], DEFAULT_SELECT, "py310")}
    assert not {"S602", "S311", "S113", "F401", "E711"} & after, after
    _git(repo, "checkout", "-q", "main")
    assert _pytest(repo, "tests/test_tools.py").returncode == 0
    committed = _git(repo, "ls-tree", "-r", "--name-only", "main", "tests/repo_pilot").splitlines()
    assert "tests/repo_pilot/test_security_change.py" in committed
    assert "tests/repo_pilot/test_compliance_change.py" in committed
    subjects = _git(repo, "log", "--format=%s", f"{base}..main")
    assert "tests: " in subjects  # in their own commit

    # reverting the change (the code at the base) makes the tests of the change fail
    reverted = tmp_path / "reverted"
    subprocess.run(["git", "clone", "-q", str(repo), str(reverted)], check=True)
    _git(reverted, "checkout", "-q", base)
    for rel in ("tests/repo_pilot/test_security_change.py", "tests/repo_pilot/test_compliance_change.py"):
        (reverted / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / rel, reverted / rel)
    result = _pytest(reverted, "tests/repo_pilot/test_security_change.py", "tests/repo_pilot/test_compliance_change.py")
    assert result.returncode == 1, result.stdout
    for name in ("runs_no_shell", "uses_no_predictable_random", "sets_a_request_timeout",
                 "unused_imports_are_gone", "no_equality_comparison"):
        assert any(name in line for line in result.stdout.splitlines() if line.startswith("FAILED")), (
            name, result.stdout[-3000:])  # fmt: skip
