"""The merger's handler against in-memory fakes of its ports: no servers."""

from __future__ import annotations

import pytest

from services.merger.handlers import on_changes_reviewed
from shared.events import ChangesReviewed, TestGroupResult, TestsCompleted, make_event
from shared.ports.errors import StepError
from tests.support.fakes import FakeForge, fake_deps
from tests.support.runs import committed_run

pytestmark = pytest.mark.unit

REPO = {"app.py": "A = 1\n"}
OWN = TestGroupResult(group="own", total=2, passed=2)


async def reviewed_and_tested(deps, *, passed=True, own_after=OWN, edits=None):
    committed = await committed_run(deps, {"one": {"app.py": "A = 2\n"}} if edits is None else edits)
    run = committed.stream_id
    review = ChangesReviewed(overall=8.0 if passed else 3.0, passed=passed, summary="s")
    tests = TestsCompleted(own_before=OWN, own_after=own_after)
    tested, = await deps.store.append(run, [make_event(tests, run, cause=committed)])
    return (await deps.store.append(run, [make_event(review, run, cause=tested)]))[-1]


async def test_merges_after_the_review_once(tmp_path):
    forge = FakeForge()
    deps = fake_deps(tmp_path, {"demo": REPO}, forge=forge)
    reviewed = await reviewed_and_tested(deps)

    out = await on_changes_reviewed(reviewed, deps)

    assert [e.type for e in out] == ["MergeCompleted", "StepCompleted"]  # the consumer opens the bead
    merge = out[0].data
    assert merge.merged and merge.pushed and merge.merge_sha == forge.requests[merge.branch].merge_sha
    assert forge.merges == [merge.branch] and merge.pr_url == "fake://requests/1"
    assert not deps.workspace.live


async def test_a_failed_review_is_published_and_left_open(tmp_path):
    forge = FakeForge()
    deps = fake_deps(tmp_path, {"demo": REPO}, forge=forge)
    reviewed = await reviewed_and_tested(deps, passed=False)

    merge = (await on_changes_reviewed(reviewed, deps))[0].data

    assert merge.pushed and not merge.merged and merge.reason.startswith("review did not pass")
    assert forge.merges == [] and forge.requests[merge.branch].state == "open"


async def test_own_tests_regressing_forbid_the_merge(tmp_path):
    forge = FakeForge()
    deps = fake_deps(tmp_path, {"demo": REPO}, forge=forge)
    reviewed = await reviewed_and_tested(deps, own_after=TestGroupResult(group="own", total=2, passed=1, failed=1))
    merge = (await on_changes_reviewed(reviewed, deps))[0].data
    assert not merge.merged and "regressed" in merge.reason and forge.merges == []


async def test_nothing_applied_means_nothing_to_merge(tmp_path):
    forge = FakeForge()
    deps = fake_deps(tmp_path, {"demo": REPO}, forge=forge)
    reviewed = await reviewed_and_tested(deps, edits={"one": "refused"})
    merge = (await on_changes_reviewed(reviewed, deps))[0].data
    assert not merge.pushed and "nothing to merge" in merge.reason
    assert forge.published == {}


async def test_a_forge_failure_leaves_no_copy(tmp_path):
    class Refusing(FakeForge):
        async def publish(self, repo, branch):
            raise StepError("the forge refuses pushes", hint="as scripted")

    deps = fake_deps(tmp_path, {"demo": REPO}, forge=Refusing())
    reviewed = await reviewed_and_tested(deps)
    with pytest.raises(StepError, match="refuses"):
        await on_changes_reviewed(reviewed, deps)
    assert f"{reviewed.stream_id}-merge" in deps.workspace.made and not deps.workspace.live
