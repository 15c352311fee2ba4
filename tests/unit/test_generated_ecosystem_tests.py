"""Generated smoke checks (shared/engines/rules/smoke.py): in the repository's own language, where its
own runner will not pick them up by accident, and never a test that only checks something exists."""

from __future__ import annotations

import json

import pytest

from shared.adapters.own_tests import _counted
from shared.engines.rules.facts import RepoFacts
from shared.engines.rules.smoke import generate, js_entry
from shared.events import Improvement
from shared.ports.sandbox import SandboxResult

pytestmark = pytest.mark.unit


def _facts(tmp_path, language, files, package=None):
    if package is not None:
        (tmp_path / "package.json").write_text(json.dumps(package))
    return RepoFacts(root=tmp_path, name="p", files=files, modules=[], language=language, languages=[language])


def _added(category, *files):
    return Improvement(id=f"{category}-1", category=category, title="t", rationale="r", files=list(files),
                       rule="check:community-docs", changes="add files")


def _api(category, init):
    return Improvement(id=f"{category}-2", category=category, title="t", rationale="r", files=[init],
                       rule="check:public-api", changes="add __all__ and __version__")


def test_no_test_is_generated_that_only_checks_added_files_or_names_exist(tmp_path):
    """Files added, `__all__` or `__version__` declared: a maintainer would delete a test that only
    checks they exist (tests/repo_pilot/test_compliance.py was committed with such tests)."""
    improvements = [_added("compliance", "SECURITY.md", "CHANGELOG.md"), _api("features", "pkg/__init__.py")]
    python = generate(_facts(tmp_path, "python", ["pkg/__init__.py"]), improvements, ["compliance", "features"])
    assert list(python.groups) == ["smoke"]  # never committed: it checks imports before and after
    js_facts = _facts(tmp_path, "javascript", ["package.json", "lib/main.js"], {"main": "./lib/main"})
    assert list(generate(js_facts, improvements, ["compliance", "security"]).groups) == ["smoke"]
    rust = generate(_facts(tmp_path, "rust", ["Cargo.toml"]), improvements, ["compliance"])
    go = generate(_facts(tmp_path, "go", ["go.mod"]), improvements, ["compliance"])
    assert rust.groups == go.groups == {}


def test_a_javascript_package_gets_a_smoke_check_outside_its_own_runners_reach(tmp_path):
    facts = _facts(tmp_path, "javascript", ["package.json", "lib/main.js"], {"main": "./lib/main"})
    generated = generate(facts, [], ["features"])
    (path, smoke), = generated.groups["smoke"].items()
    assert path == ".repo-pilot/checks/smoke.cjs"
    assert '"lib/main.js"' in smoke and "import(" in smoke and "require('node:test')" in smoke
    assert "{{" not in smoke and "}}" not in smoke


def test_the_entry_point_falls_back_to_index_js_and_is_none_without_one(tmp_path):
    assert js_entry(_facts(tmp_path, "javascript", ["package.json", "index.js"], {"name": "x"})) == "index.js"
    assert js_entry(_facts(tmp_path, "javascript", ["package.json", "cli.js"], {"name": "x"})) is None
    assert "smoke" not in generate(_facts(tmp_path, "javascript", ["package.json"], {}), [], ["features"]).groups


def test_a_runner_that_was_never_installed_is_not_run_not_a_failed_test():
    done = SandboxResult(exit_code=127, stdout="> x@1.0.0 test\n> mocha\n", stderr="sh: 1: mocha: not found\n",
                         timed_out=False, duration=0.1)
    r = _counted("node", done, "`npm install` failed (exit 1): EAI_AGAIN\n", "own")
    assert (r.total, r.passed, r.failed, r.errors) == (1, 0, 0, 1)
    assert r.output.startswith("could not run: the test command was not found") and "EAI_AGAIN" in r.output
    ran = _counted("node", SandboxResult(exit_code=1, stdout="  1 passing\n  1 failing\n", stderr="",
                                         timed_out=False, duration=0.1), "", "own")
    assert (ran.total, ran.failed, ran.errors) == (2, 1, 0)
