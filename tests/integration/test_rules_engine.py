"""The rules engine on real repositories: real git, real ruff and bandit, the repos' own pytest suites."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from shared.adapters.analyzers import run_ruff
from shared.engines.rules import RulesEngine
from shared.events import CATEGORIES
from shared.examples import make_demo_repo
from shared.ports.engine import Engine
from shared.ports.errors import ChangeRejectedError
from tests.support.rules_repos import WIDGETS, commit_all, git, make_repo, run_pytest, write

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def by_id(improvements):
    return {i.id: i for i in improvements}


async def suggest(repo, categories=CATEGORIES):
    engine = RulesEngine()
    analysis = await engine.analyze(repo)
    return engine, await engine.suggest(repo, analysis, list(categories))


async def apply_all(engine, repo, improvements):
    """Implement every improvement in order, committing each: (applied, {id: rejection reason})."""
    applied, rejected = [], {}
    for imp in improvements:
        try:
            await engine.implement(repo, imp)
        except ChangeRejectedError as exc:
            rejected[imp.id] = exc.reason
            assert git(repo, "status", "--porcelain") == "", f"{imp.id} was rejected but left changes"
            continue
        applied.append(imp)
        commit_all(repo, imp.id, author="Repo Pilot")
    return applied, rejected


def test_the_rules_engine_implements_the_engine_port():
    engine = RulesEngine()
    assert isinstance(engine, Engine)
    assert engine.name == "rules" and engine.drain_calls() == []


async def test_a_bugbear_finding_is_a_bug_risk_fixed_by_ruff_and_the_repos_tests_stay_green(tmp_path):
    repo = make_repo(tmp_path / "widgets", WIDGETS)
    assert run_pytest(repo).returncode == 0
    engine, improvements = await suggest(repo, ["security", "compliance"])
    assert not [i for i in improvements if i.category == "security" and "B009" in (i.rule or "")]
    fix = by_id(improvements)["compliance-lint-b"]  # bugbear is a bug risk, not a security matter
    assert fix.rule == "lint:B009" and fix.files == ["widgets/core.py"]

    result = await engine.implement(repo, fix)

    assert result.files == ["widgets/core.py"]
    assert "widget.name" in (repo / "widgets/core.py").read_text()
    assert run_ruff(repo, ["widgets/core.py"], ["B009"], "py310") == []
    tests = run_pytest(repo)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert git(repo, "diff", "--name-only") == "widgets/core.py"


async def test_an_improvement_with_no_safe_fix_is_rejected_with_a_reason(tmp_path):
    repo = make_repo(tmp_path / "widgets", WIDGETS)
    engine, improvements = await suggest(repo, ["security"])
    password = by_id(improvements)["security-S105-widgets_settings_py"]
    assert password.rule == "ruff:S105" and "hardcoded-password" in password.title

    with pytest.raises(ChangeRejectedError) as rejected:
        await engine.implement(repo, password)

    assert "no automatic fix" in rejected.value.reason and "S105" in rejected.value.reason
    assert git(repo, "status", "--porcelain") == ""  # nothing faked, nothing left behind


async def test_missing_license_and_ci_are_added_from_templates_with_the_repos_facts(tmp_path):
    repo = make_repo(tmp_path / "widgets", WIDGETS, author="Ada Lovelace")
    write(repo, {"widgets/extra.py": '"""More."""\n'})
    commit_all(repo, "more", author="Ada Lovelace")
    write(repo, {"README.md": "# acme-widgets\n\nBy Bob too.\n"})
    commit_all(repo, "readme", author="Bob Builder")
    year = git(repo, "log", "-1", "--format=%ad", "--date=format:%Y")
    engine, improvements = await suggest(repo, ["compliance", "integration"])
    found = by_id(improvements)

    await engine.implement(repo, found["compliance-license"])
    await engine.implement(repo, found["integration-ci-workflow"])

    license_text = (repo / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    assert f"Copyright (c) {year} Ada Lovelace" in license_text  # the most frequent author
    ci = (repo / ".github/workflows/ci.yml").read_text()
    assert "acme-widgets" in ci
    workflow = yaml.safe_load(ci)
    steps = workflow["jobs"]["test"]["steps"]
    assert any(s.get("with", {}).get("python-version") == "3.10" for s in steps)  # from requires-python
    assert any(s.get("run") == "python -m pytest" for s in steps)  # the repo has tests
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["push"]["branches"] == ["main"]

    with pytest.raises(ChangeRejectedError, match="already exist"):
        await engine.implement(repo, found["integration-ci-workflow"])


async def test_checks_with_no_automatic_fix_are_rejected_not_faked(tmp_path):
    files = {
        **WIDGETS,
        "pyproject.toml": '[project]\nname = "bare"\nversion = "0.1.0"\ndependencies = ["requests>=2"]\n',
        "widgets/tokens.py": 'GITHUB_TOKEN = "ghp_' + "a1B2c3D4e5" * 4 + '"\n',
    }
    repo = make_repo(tmp_path / "bare", files)
    engine, improvements = await suggest(repo)
    found = by_id(improvements)

    expected = {
        "compliance-license": "owner's decision",  # no license declared: choosing one is not ours
        "compliance-packaging-metadata": "maintainer's to choose",
        "integration-lockfile": "network access",
        "security-secrets": "revoked",
    }
    for imp_id, why in expected.items():
        with pytest.raises(ChangeRejectedError) as rejected:
            await engine.implement(repo, found[imp_id])
        assert why in rejected.value.reason and "no automatic fix" in rejected.value.reason
    assert found["security-secrets"].files == ["widgets/tokens.py"]
    assert found["security-secrets"].rule == "secrets:github-token"
    assert git(repo, "status", "--porcelain") == ""


async def test_features_derived_without_a_model_or_a_note_saying_there_are_none(tmp_path):
    repo = make_repo(tmp_path / "widgets", WIDGETS)  # declares __all__ and __version__ already
    engine, improvements = await suggest(repo, ["features"])
    assert improvements == []
    assert "model" in engine.notes["features"]

    demo = make_demo_repo(tmp_path / "demo")
    engine, improvements = await suggest(demo, ["features"])
    api = by_id(improvements)["features-public-api-inventory"]
    assert api.files == ["inventory/__init__.py"]
    assert all(i.rule.startswith(("lint:UP", "check:public-api")) for i in improvements)
    await engine.implement(demo, api)
    source = (demo / "inventory/__init__.py").read_text()
    assert '__version__ = "0.3.1"' in source and '    "Store",\n' in source


async def test_analyze_on_the_demo_repo_draws_the_real_import_graph(tmp_path):
    repo = make_demo_repo(tmp_path / "demo")
    analysis = await RulesEngine().analyze(repo)

    assert "```mermaid\ngraph TD" in analysis.graph
    for edge in (
        "inventory_cli --> inventory_store",
        "inventory_cli --> inventory_config",
        "inventory_reports --> inventory_store",
        "inventory_store --> inventory_models",
        "inventory --> inventory_models",
    ):
        assert edge in analysis.graph
    assert "inventory_models --> " not in analysis.graph  # models imports nothing of ours
    assert "tests_" not in analysis.graph
    assert "`inventory` → `inventory.cli:main`" in analysis.specification
    assert "`Store`" in analysis.specification and "`stock_report`" in analysis.specification
    assert "**persistence**: `inventory.store`" in analysis.architecture
    assert analysis.stats["packages"] == ["inventory"]
    assert analysis.stats["languages"]["Python"] == 9 and analysis.stats["test_files"] == 3


async def test_the_demo_gets_fixes_in_every_category_and_its_own_and_generated_tests_pass(tmp_path):
    repo = make_demo_repo(tmp_path / "demo")
    base = git(repo, "rev-parse", "HEAD")
    engine, improvements = await suggest(repo)
    applied, rejected = await apply_all(engine, repo, improvements)

    assert {i.category for i in applied} == set(CATEGORIES)
    assert set(rejected) == {"security-S105-inventory_config_py"}
    # at most 4 per category; fewer where the repository gives no more evidence (configs for services
    # it does not use are proposed only when their category is asked for on its own)
    assert all(1 <= n <= 4 for n in _per_category(improvements).values())
    own = run_pytest(repo)
    assert own.returncode == 0, own.stdout + own.stderr
    changed = git(repo, "diff", "--name-only", base, "HEAD").splitlines()
    assert {"LICENSE", "SECURITY.md", ".github/workflows/ci.yml", "inventory/reports.py"} <= set(changed)

    generated = await engine.write_tests(repo, applied, list(CATEGORIES))
    assert "smoke" in generated.groups
    # the tests of the change exercise code; none only checks that a file or name exists
    every = "".join(text for files in generated.groups.values() for text in files.values())
    assert "was_added" not in every and "declares_all" not in every and "has_version" not in every
    for files in generated.groups.values():
        write(repo, files)
    result = run_pytest(repo, "tests/repo_pilot")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "inventory.cli" in generated.groups["smoke"]["tests/repo_pilot/test_smoke.py"]


async def test_generated_smoke_tests_fail_when_a_module_does_not_import(tmp_path):
    repo = make_repo(
        tmp_path / "widgets", {**WIDGETS, "widgets/broken.py": "import does_not_exist_anywhere\n"}
    )
    generated = await RulesEngine().write_tests(repo, [], ["features"])
    write(repo, generated.groups["smoke"])
    result = run_pytest(repo, "tests/repo_pilot")
    assert result.returncode == 1 and "widgets.broken" in result.stdout


def _per_category(improvements):
    counts: dict[str, int] = {}
    for imp in improvements:
        counts[imp.category] = counts.get(imp.category, 0) + 1
    return counts


async def test_two_runs_on_two_fresh_copies_give_identical_improvements_and_diffs(tmp_path):
    outcomes = []
    for name in ("one", "two"):
        repo = make_demo_repo(tmp_path / name)
        base = git(repo, "rev-parse", "HEAD")
        engine, improvements = await suggest(repo)
        applied, rejected = await apply_all(engine, repo, improvements)
        diff = git(repo, "diff", base, "HEAD")
        tests = await engine.write_tests(repo, applied, list(CATEGORIES))
        outcomes.append(([i.model_dump() for i in improvements], rejected, diff, tests.model_dump()))

    first, second = outcomes
    assert first[0] == second[0]
    assert first[1] == second[1]
    assert first[2] == second[2] and first[2]
    assert first[3] == second[3]


def test_the_engine_finds_ruff_next_to_the_interpreter():
    from shared.adapters.analyzers import tool_command

    cmd = tool_command("ruff")
    out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ruff ")
    assert cmd[0].startswith(sys.prefix) or cmd[0] == sys.executable or "ruff" in cmd[0]


async def test_analysis_names_the_projects_own_docs_and_its_runtime_dependencies_only(tmp_path):
    """A Sphinx tree is the project's docs (the docs step adds none beside it); a development
    requirements file lists tools, not what the project needs to run."""
    repo = make_demo_repo(tmp_path / "demo")
    assert (await RulesEngine().analyze(repo)).stats["own_docs"] is None
    write(repo, {"docs/conf.py": "project = 'inventory'\n", "docs/index.rst": "Inventory\n=========\n",
                 "requirements.txt": "attrs\n", "requirements-dev.txt": "Sphinx\nblack\n"})
    commit_all(repo, "sphinx docs")
    analysis = await RulesEngine().analyze(repo)
    assert analysis.stats["own_docs"] == "Sphinx (docs/conf.py)"
    assert "attrs" in analysis.stats["dependencies"] and "Sphinx" not in analysis.stats["dependencies"]
    assert "- `Sphinx`" not in analysis.specification
