"""The isolated tools env (codemodder + semgrep): created with pip on first use, reused, and an offline
machine gets a plain reason and ruff's fixes instead."""

from __future__ import annotations

import time

import pytest

from shared.adapters.codemods import describe, run_codemod
from shared.adapters.tools_env import READY, ToolsUnavailable, ensure_tools
from shared.engines.rules import RulesEngine
from tests.support.rules_repos import TOOLS, make_repo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_the_tools_env_is_created_from_pypi_then_reused_and_its_codemods_run(tmp_path):
    """The fresh-machine install: a new venv, `pip install codemodder semgrep` from the index."""
    env = ensure_tools(tmp_path / "tools")
    assert (env / READY).is_file() and (env / "bin" / "codemodder").exists() and (env / "bin" / "semgrep").exists()
    started = time.monotonic()
    assert ensure_tools(tmp_path / "tools") == env  # reused, not reinstalled
    assert time.monotonic() - started < 5
    infos = describe(env)
    assert "pixee:python/subprocess-shell-false" in infos and infos["pixee:python/secure-random"].description

    repo = make_repo(tmp_path / "acme", TOOLS)
    result = run_codemod(env, repo, "pixee:python/add-requests-timeouts", ["acme/tools.py"])
    assert result.changed == ["acme/tools.py"]
    assert "requests.get(url, timeout=60)" in (repo / "acme/tools.py").read_text()


async def test_offline_the_engine_says_so_and_falls_back_to_ruffs_fixes(tmp_path):
    unreachable = ("--index-url", "http://127.0.0.1:9/simple")
    with pytest.raises(ToolsUnavailable, match="pip install"):
        ensure_tools(tmp_path / "tools", pip_options=unreachable)
    started = time.monotonic()
    with pytest.raises(ToolsUnavailable):  # remembered: the next run does not wait for pip again
        ensure_tools(tmp_path / "tools", pip_options=unreachable)
    assert time.monotonic() - started < 5

    repo = make_repo(tmp_path / "acme", TOOLS)
    engine = RulesEngine(home=tmp_path / "home", tools_home=tmp_path / "tools")
    improvements = await engine.suggest(repo, await engine.analyze(repo), ["security", "compliance"])
    assert "Security codemods are unavailable" in engine.notes["security"]
    assert "pip install" in engine.notes["security"]
    rules = {i.rule for i in improvements}
    assert not any(r.startswith("codemod:") for r in rules)
    assert "lint:F401" in rules  # ruff's fixes are still proposed
