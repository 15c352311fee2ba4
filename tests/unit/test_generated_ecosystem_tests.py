"""Generated tests for repositories that are not Python (shared/engines/rules/smoke.py): written in
the repository's own language, where its own runner will not pick them up by accident."""

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


def test_a_javascript_package_gets_node_test_files_outside_its_own_runners_reach(tmp_path):
    facts = _facts(tmp_path, "javascript", ["package.json", "lib/main.js"], {"main": "./lib/main"})
    generated = generate(facts, [_added("compliance", "SECURITY.md", "CHANGELOG.md")], ["compliance", "security"])
    assert sorted(generated.groups) == ["compliance", "smoke"]
    (path, text), = generated.groups["compliance"].items()
    assert path == ".repo-pilot/checks/compliance.cjs"
    assert "require('node:test')" in text and '["CHANGELOG.md", "SECURITY.md"]' in text
    smoke = generated.groups["smoke"][".repo-pilot/checks/smoke.cjs"]
    assert '"lib/main.js"' in smoke and "import(" in smoke
    every = [p for files in generated.groups.values() for p in files]
    assert not [p for p in every if p.endswith(".py") or p.startswith("test/") or ".test." in p]


def test_the_entry_point_falls_back_to_index_js_and_is_none_without_one(tmp_path):
    assert js_entry(_facts(tmp_path, "javascript", ["package.json", "index.js"], {"name": "x"})) == "index.js"
    assert js_entry(_facts(tmp_path, "javascript", ["package.json", "cli.js"], {"name": "x"})) is None
    assert "smoke" not in generate(_facts(tmp_path, "javascript", ["package.json"], {}), [], ["features"]).groups


def test_a_rust_crate_gets_cargo_integration_tests_and_go_gets_none(tmp_path):
    rust = generate(_facts(tmp_path, "rust", ["Cargo.toml"]), [_added("compliance", "SECURITY.md")], ["compliance"])
    assert list(rust.groups) == ["compliance"]
    text = rust.groups["compliance"]["tests/repo_pilot_compliance.rs"]
    assert '&[&str] = &["SECURITY.md"]' in text and "CARGO_MANIFEST_DIR" in text and "#[test]" in text
    go = generate(_facts(tmp_path, "go", ["go.mod"]), [_added("compliance", "SECURITY.md")], ["compliance"])
    assert go.groups == {}


def test_a_runner_that_was_never_installed_is_not_run_not_a_failed_test():
    done = SandboxResult(exit_code=127, stdout="> x@1.0.0 test\n> mocha\n", stderr="sh: 1: mocha: not found\n",
                         timed_out=False, duration=0.1)
    r = _counted("node", done, "`npm install` failed (exit 1): EAI_AGAIN\n", "own")
    assert (r.total, r.passed, r.failed, r.errors) == (1, 0, 0, 1)
    assert r.output.startswith("could not run: the test command was not found") and "EAI_AGAIN" in r.output
    ran = _counted("node", SandboxResult(exit_code=1, stdout="  1 passing\n  1 failing\n", stderr="",
                                         timed_out=False, duration=0.1), "", "own")
    assert (ran.total, ran.failed, ran.errors) == (2, 1, 0)
