"""The Signals port: one contract suite, run against the real StaticSignals (ruff on the touched
files) and the scripted fake the handler unit tests use."""

from __future__ import annotations

import pytest

from shared.adapters.git import git
from shared.adapters.signals import StaticSignals
from shared.adapters.workspace import commit_all
from shared.ports.signals import SIGNAL_KEYS, Signals
from tests.conftest import make_git_repo
from tests.support.fakes import FakeSignals


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration),
                        pytest.param("fake", marks=pytest.mark.unit)])
def signals(request) -> Signals:
    return StaticSignals() if request.param == "real" else FakeSignals()


@pytest.fixture
def change(tmp_path):
    """A copy whose HEAD changes app.py and adds notes.txt on top of the base commit."""
    repo = make_git_repo(tmp_path / "repo", {"app.py": "A = 1\n", "README.md": "hi\n"})
    base = git(repo, "rev-parse", "HEAD")
    (repo / "app.py").write_text("A = 2\n")
    (repo / "notes.txt").write_text("note\n")
    commit_all(repo, "change")
    return repo, base


def test_implements_the_port(signals):
    assert isinstance(signals, Signals)


async def test_signals_name_the_commits_and_the_touched_python_files(signals, change):
    repo, base = change
    got = await signals.compute(repo, base, "HEAD")
    assert set(got) == SIGNAL_KEYS
    assert (got["base_sha"], got["head_sha"]) == (base, git(repo, "rev-parse", "HEAD"))  # HEAD resolved
    assert got["checked_files"] == ["app.py"] and got["diff"]["files"] == 2
    assert got["findings_before"] == got["findings_after"] == {} and got["findings_delta"] == {}
    assert got["parse_failures"] == []


async def test_a_name_that_is_not_a_commit_is_a_value_error(signals, change):
    repo, base = change
    with pytest.raises(ValueError, match="not a commit"):
        await signals.compute(repo, base, "no-such-ref")
