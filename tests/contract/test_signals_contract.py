"""The Signals port: one contract suite, run against the real StaticSignals (ruff on the touched
files, over a real git copy) and the scripted fake the handler unit tests use (over the
in-memory repositories)."""

from __future__ import annotations

import pytest

from shared.adapters.signals import StaticSignals
from shared.ports.signals import SIGNAL_KEYS, Signals
from tests.support.fakes import FakeSignals
from tests.support.repo_cases import repo_case


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.integration),
                        pytest.param("fake", marks=pytest.mark.unit)])
async def change(request, tmp_path):
    """(signals, a copy whose HEAD changes app.py and adds notes.txt on top of the base, the base)."""
    case = repo_case(request.param, tmp_path, {"app.py": "A = 1\n", "README.md": "hi\n"})
    signals = StaticSignals() if request.param == "real" else FakeSignals(case.repos)
    base = (await case.workspace.materialize(case.source)).base_sha
    path = await case.workspace.worktree("change", case.source, base)
    (path / "app.py").write_text("A = 2\n")
    (path / "notes.txt").write_text("note\n")
    await case.changes.commit(path, "change")
    return signals, case.changes, path, base


def test_implements_the_port(change):
    assert isinstance(change[0], Signals)


async def test_signals_name_the_commits_and_the_touched_python_files(change):
    signals, changes, path, base = change
    got = await signals.compute(path, base, "HEAD")
    assert set(got) == SIGNAL_KEYS
    assert (got["base_sha"], got["head_sha"]) == (base, await changes.head(path))  # HEAD resolved to its commit
    assert got["checked_files"] == ["app.py"] and got["diff"]["files"] == 2
    assert got["created_files"] == ["notes.txt"]
    assert got["findings_before"] == got["findings_after"] == {} and got["findings_delta"] == {}
    assert got["parse_failures"] == []


async def test_a_name_that_is_not_a_commit_is_a_value_error(change):
    signals, _changes, path, base = change
    with pytest.raises(ValueError, match="not a commit"):
        await signals.compute(path, base, "no-such-ref")
