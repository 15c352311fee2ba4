"""The codemod tools env is installed once per machine, not once per data directory."""

from __future__ import annotations

import platformdirs
import pytest

from shared.common.settings import Settings

pytestmark = pytest.mark.unit


def test_every_data_directory_shares_one_tools_env(tmp_path, monkeypatch):
    monkeypatch.delenv("REPO_PILOT_TOOLS_HOME", raising=False)
    first = Settings(REPO_PILOT_HOME=tmp_path / "one").tools_home
    second = Settings(REPO_PILOT_HOME=tmp_path / "two").tools_home
    assert first == second
    assert first.is_relative_to(platformdirs.user_cache_dir("repo-pilot")) and not first.is_relative_to(tmp_path)


def test_repo_pilot_tools_home_still_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("REPO_PILOT_TOOLS_HOME", str(tmp_path / "tools"))
    assert Settings(REPO_PILOT_HOME=tmp_path / "home").tools_home == tmp_path / "tools"
