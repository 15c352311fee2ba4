"""The rules engine's fixes on real repositories: codemods and ruff fixes, validated by the own tests."""

from __future__ import annotations

import pytest

from shared.engines.rules import RulesEngine
from shared.ports.errors import ChangeRejectedError
from tests.support.rules_repos import SHELL_STRING, TOOLS, git, make_repo, write

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


async def _suggest(repo, categories):
    engine = RulesEngine(home=repo.parent / "home")
    return engine, {i.id: i for i in await engine.suggest(repo, await engine.analyze(repo), categories)}


async def test_a_behaviour_changing_fix_without_its_context_is_proposed_not_applied(tmp_path):
    # `shell=True` with a command string: without the shell, the string is no program name, so the
    # codemod would break `greet` (its own test would catch it, but passing tests are not the proof:
    # the site check refuses it before anything is changed, and says why).
    repo = make_repo(tmp_path / "greet", SHELL_STRING)
    engine, improvements = await _suggest(repo, ["security"])
    fix = improvements["security-codemod-subprocess-shell-false"]
    assert fix.rule == "codemod:pixee:python/subprocess-shell-false"

    with pytest.raises(ChangeRejectedError) as rejected:
        await engine.implement(repo, fix)
    assert "proposed, not applied" in rejected.value.reason
    assert "greet/core.py:7: the command is not an argument list" in rejected.value.reason
    assert git(repo, "status", "--porcelain") == ""  # the file is left exactly as it was


async def test_safe_lint_fixes_follow_the_targets_own_ruff_config(tmp_path):
    files = {**TOOLS, "ruff.toml": '[lint]\nignore = ["E711"]\n\n[lint.per-file-ignores]\n"acme/tools.py" = ["F401"]\n'}
    repo = make_repo(tmp_path / "configured", files)
    _, improvements = await _suggest(repo, ["compliance", "security"])
    assert not [i for i in improvements.values() if (i.rule or "").startswith("lint") and
                {"F401", "E711"} & set(i.rule.partition(":")[2].split(","))], improvements.keys()

    repo = make_repo(tmp_path / "plain", TOOLS)
    _, improvements = await _suggest(repo, ["compliance", "security"])
    assert improvements["compliance-lint-f"].rule == "lint:F401"
    assert "×6" in improvements["compliance-lint-f"].rationale
    assert improvements["compliance-lint-e7-unsafe"].rule == "lint-unsafe:E711"


async def test_an_unsafe_fix_is_applied_only_with_the_own_tests_green(tmp_path):
    repo = make_repo(tmp_path / "acme", TOOLS)
    engine, improvements = await _suggest(repo, ["compliance"])
    result = await engine.implement(repo, improvements["compliance-lint-e7-unsafe"])
    assert "own tests still pass" in result.summary and result.files == ["acme/tools.py"]
    assert "value is None" in (repo / "acme/tools.py").read_text()
    assert git(repo, "status", "--porcelain") == "M acme/tools.py"  # nothing the test run left behind

    # a suite that pins the old comparison (a value whose __eq__ says it equals None) rejects it
    broken = make_repo(tmp_path / "pinned", {**TOOLS, "tests/test_pinned.py": (
        "from acme.tools import describe\n\n\nclass Nothing:\n    def __eq__(self, other):\n"
        "        return other is None\n\n\ndef test_a_none_like_value_is_nothing():\n"
        "    assert describe(Nothing()) == 'nothing'\n")})  # fmt: skip
    engine, improvements = await _suggest(broken, ["compliance"])
    with pytest.raises(ChangeRejectedError) as rejected:
        await engine.implement(broken, improvements["compliance-lint-e7-unsafe"])
    assert "test_a_none_like_value_is_nothing" in rejected.value.reason


async def test_a_fix_without_any_own_test_to_validate_it_is_not_applied(tmp_path):
    files = {k: v for k, v in TOOLS.items() if not k.startswith("tests/")}
    repo = make_repo(tmp_path / "untested", files)
    engine, improvements = await _suggest(repo, ["compliance"])
    with pytest.raises(ChangeRejectedError, match="no tests of its own"):
        await engine.implement(repo, improvements["compliance-lint-e7-unsafe"])
    write(repo, {})
    assert git(repo, "status", "--porcelain") == ""
