"""Objective signals on real git histories with real ruff."""

from __future__ import annotations

import pytest

from shared.adapters.signals import compute_signals, findings_delta, parse_numstat
from shared.policy.review import combine_review
from tests.support.rules_repos import WIDGETS, commit_all, git, make_repo, write

pytestmark = pytest.mark.integration


@pytest.fixture
def widgets(tmp_path):
    repo = make_repo(tmp_path / "widgets", WIDGETS)
    return repo, git(repo, "rev-parse", "HEAD")


async def test_a_fix_lowers_the_findings_and_the_diff_is_measured(widgets):
    repo, base = widgets
    core = (repo / "widgets/core.py").read_text().replace('getattr(widget, "name")', "widget.name")
    write(repo, {"widgets/core.py": core})
    head = commit_all(repo, "fix B009")

    signals = await compute_signals(repo, base, head)

    assert signals["base_sha"] == base and signals["head_sha"] == head
    assert signals["findings_before"] == {"B009": 1}
    assert signals["findings_after"] == {}
    assert signals["findings_delta"] == {"B009": -1}
    assert signals["diff"] == {"files": 1, "added": 1, "removed": 1}
    assert signals["parse_failures"] == []
    assert combine_review(signals, None, threshold=7.0)["blockers"] == []


async def test_new_findings_and_files_that_do_not_parse_are_blockers(widgets):
    repo, _ = widgets
    write(
        repo,
        {
            "widgets/run.py": "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n",
            "widgets/core.py": "def broken(:\n    pass\n",
        },
    )
    head = commit_all(repo, "a risky change")

    signals = await compute_signals(repo, "main~1", "HEAD")

    assert signals["head_sha"] == head  # names are resolved to commits
    assert signals["findings_after"].get("S602") == 1
    assert signals["parse_failures"] and signals["parse_failures"][0].startswith("widgets/core.py:1")
    assert signals["diff"]["files"] == 2
    verdict = combine_review(signals, None, threshold=1.0)
    assert verdict["passed"] is False
    assert any("findings grew" in b for b in verdict["blockers"])
    assert any("do not parse" in b for b in verdict["blockers"])


async def test_deleted_and_non_python_files_count_in_the_diff_only(widgets):
    repo, base = widgets
    (repo / "widgets/settings.py").unlink()
    write(repo, {"README.md": "# acme-widgets\n\nMore words.\n"})
    head = commit_all(repo, "drop settings")

    signals = await compute_signals(repo, base, head)

    assert signals["findings_before"] == {"S105": 1}  # the hard-coded password went away with the file
    assert signals["findings_after"] == {}
    assert signals["diff"]["files"] == 2 and signals["diff"]["removed"] == 3


async def test_an_unknown_commit_is_a_clear_error(widgets):
    repo, base = widgets
    with pytest.raises(ValueError, match="not a commit"):
        await compute_signals(repo, base, "0" * 40)


def test_pure_helpers():
    assert parse_numstat("1\t2\ta.py\n-\t-\tlogo.png\n") == {
        "files": 2,
        "added": 1,
        "removed": 2,
        "paths": ["a.py", "logo.png"],
    }
    assert findings_delta({"B009": 2, "S105": 1}, {"S105": 1, "S602": 1}) == {"B009": -2, "S602": 1}
