"""The whole pipeline over real NATS, Postgres and git with the offline rules engine."""

from __future__ import annotations

import subprocess

import pytest

from shared.events import PipelineRequested
from tests.support.pipeline import run_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # codemods and own-test validation take minutes


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


async def test_demo_repository_is_improved_reviewed_tested_and_merged(settings, tmp_path):
    from shared.examples import make_demo_repo

    repo = make_demo_repo(tmp_path / "inventory")
    before = _git(repo, "rev-parse", "HEAD")
    run, beads, events = await run_pipeline(settings, PipelineRequested(repo=str(repo), engine="rules"))

    types = [e.type for e in events]
    assert run["status"] == "COMPLETED", run["error"]
    assert run["merged"] is True, run["error"]
    assert "PipelineCompleted" in types and "DocsUpdated" in types

    # the default branch moved: a --no-ff merge of the run branch, then the docs merge
    assert _git(repo, "rev-parse", "main") != before
    applied = [e.data for e in events if e.type == "ChangeApplied"]
    rejected = [e.data for e in events if e.type == "ChangeRejected"]
    assert applied, "the demo has findings with safe fixes"
    assert all(r.reason for r in rejected)
    branch_commits = _git(repo, "rev-list", f"{before}..{run['branch']}").splitlines()
    subjects = _git(repo, "log", "--format=%s", f"{before}..{run['branch']}").splitlines()
    # one commit per applied improvement, plus one with the generated tests of the change
    assert len([s for s in subjects if not s.startswith("tests: ")]) == len(applied)
    assert len(branch_commits) == len(applied) + 1 and subjects[0].startswith("tests: ")
    assert set(_git(repo, "log", "--format=%H", "main").splitlines()) >= set(branch_commits)
    for doc in ("docs/specification.md", "docs/graph.md", "docs/architecture.md"):
        assert (repo / doc).exists() or _git(repo, "show", f"main:{doc}")

    steps = {b["bead_id"]: b for b in beads if b["kind"] == "step"}
    assert all(b["status"] == "COMPLETED" for b in steps.values()), {k: b["status"] for k, b in steps.items()}
    improvements = [b for b in beads if b["kind"] == "improvement"]
    assert {b["status"] for b in improvements} <= {"COMPLETED", "SKIPPED"}
    assert run["tests"]["own_after"]["failed"] == 0 and run["tests"]["regressed"] is False

    # every event appended exactly once: no duplicates from redeliveries
    assert len({e.event_id for e in events}) == len(events)
    assert types.count("ChangesCommitted") == 1 and types.count("MergeCompleted") == 1


async def test_a_path_that_is_not_a_repository_fails_the_run_with_a_hint(settings, tmp_path):
    missing = tmp_path / "does-not-exist"
    run, beads, events = await run_pipeline(settings, PipelineRequested(repo=str(missing), engine="rules"))
    assert run["status"] == "FAILED"
    failed = [e.data for e in events if e.type == "PipelineFailed"]
    assert len(failed) == 1 and failed[0].step == "analyze"
    assert str(missing) in failed[0].error
    assert {b["bead_id"]: b["status"] for b in beads}["analyze"] == "FAILED"
    assert {b["status"] for b in beads if b["bead_id"] != "analyze"} == {"SKIPPED"}


async def test_a_safe_fix_that_breaks_the_repositorys_own_tests_is_not_merged(settings, tmp_path):
    """The B009 fix is behaviour-preserving for Python, but this repository pins its source text in a
    test (a snapshot test): the tester sees the regression and the merger keeps the branch open."""
    from tests.support.rules_repos import WIDGETS, make_repo

    files = {**WIDGETS, "tests/test_snapshot.py": (
        "import inspect\n\nfrom widgets import core\n\n\ndef test_describe_source_is_unchanged():\n"
        "    assert 'getattr(widget, \"name\")' in inspect.getsource(core.describe)\n")}
    repo = make_repo(tmp_path / "widgets", files)
    before = _git(repo, "rev-parse", "main")
    run, beads, events = await run_pipeline(
        settings, PipelineRequested(repo=str(repo), engine="rules", categories=["compliance"]))

    assert run["status"] == "COMPLETED", run["error"]
    assert any(e.type == "ChangeApplied" and "widgets/core.py" in e.data.files for e in events)
    [tests] = [e.data for e in events if e.type == "TestsCompleted"]
    assert tests.regressed and tests.own_after.failed == 1 and tests.own_before.failed == 0
    [merge] = [e.data for e in events if e.type == "MergeCompleted"]
    assert merge.merged is False and "regress" in merge.reason
    assert _git(repo, "rev-parse", "main") == before
    assert run["merged"] is False


async def test_scaffold_adds_only_missing_best_practice_files_on_a_branch(settings, tmp_path):
    from tests.support.rules_repos import WIDGETS, make_repo

    repo = make_repo(tmp_path / "widgets", WIDGETS)
    request = PipelineRequested(repo=str(repo), engine="rules", categories=["compliance", "integration"],
                                mode="scaffold")
    run, beads, events = await run_pipeline(settings, request)

    [suggested] = [e.data for e in events if e.type == "ImprovementsSuggested"]
    assert suggested.improvements, "the fixture lacks LICENSE, CI, pre-commit…"
    tracked_before = set(_git(repo, "ls-tree", "-r", "--name-only", run["base_sha"]).splitlines())
    for imp in suggested.improvements:  # only new files, never edits of existing ones
        assert imp.files and not set(imp.files) & tracked_before, imp
    added = {f for e in events if e.type == "ChangeApplied" for f in e.data.files}
    assert ".github/workflows/ci.yml" in added
    assert added.isdisjoint(tracked_before)


async def test_a_git_url_is_cloned_improved_and_merged_through_the_remote(settings, tmp_path):
    from shared.examples import make_demo_repo

    work = make_demo_repo(tmp_path / "inventory")
    bare = tmp_path / "inventory.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    before = _git(bare, "rev-parse", "main")
    request = PipelineRequested(repo=f"file://{bare}", engine="rules", forge="remote",
                                categories=["security", "integration"])
    run, beads, events = await run_pipeline(settings, request)

    assert run["status"] == "COMPLETED" and run["merged"] is True, run["error"]
    assert _git(bare, "rev-parse", "main") != before  # merged on the remote itself
    assert _git(bare, "rev-parse", run["branch"])  # the run branch was pushed there
    assert "docs/graph.md" in _git(bare, "ls-tree", "-r", "--name-only", "main")
