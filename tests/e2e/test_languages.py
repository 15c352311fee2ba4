"""Other languages, through the whole pipeline: a JavaScript package and a Rust crate get files
correct for their ecosystem, named after the project, and their own tests run with their own
runner; no internal name reaches anything written into the user's repository."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from shared.events import PipelineRequested
from tests.conftest import make_git_repo
from tests.support.pipeline import run_pipeline

pytestmark = pytest.mark.e2e

JS_PACKAGE = {
    "package.json": '{\n  "name": "tiny-math",\n  "version": "1.0.0",\n  "main": "index.js",\n'
                    '  "scripts": {"test": "node --test"}\n}\n',
    "index.js": "function add(a, b) {\n  return a + b;\n}\n\nmodule.exports = { add };\n",
    "test/add.test.js": "const test = require('node:test');\nconst assert = require('node:assert');\n"
                        "const { add } = require('../index.js');\n\n"
                        "test('adds', () => { assert.strictEqual(add(1, 2), 3); });\n"
                        "test('adds negatives', () => { assert.strictEqual(add(-1, -2), -3); });\n",
}
RUST_CRATE = {
    "Cargo.toml": '[package]\nname = "tiny_calc"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n',
    "src/lib.rs": "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\n#[cfg(test)]\nmod tests {\n"
                  "    use super::*;\n\n    #[test]\n    fn adds() {\n        assert_eq!(add(2, 2), 4);\n    }\n\n"
                  "    #[test]\n    fn adds_zero() {\n        assert_eq!(add(0, 5), 5);\n    }\n}\n",
    ".gitignore": "target/\n",
}


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _merged_tree_text(repo) -> dict[str, str]:
    files = _git(repo, "ls-tree", "-r", "--name-only", "main").split()
    return {f: _git(repo, "show", f"main:{f}") for f in files}


async def _run(settings, repo):
    # CI and Dependabot configs are added only when their category is asked for on its own (a default
    # run that adds only configs nobody asked for stays below the merge gate): ask for it.
    request = PipelineRequested(repo=str(repo), engine="rules", categories=["integration", "compliance"])
    run, beads, events = await run_pipeline(settings, request, timeout=400)
    assert run["status"] == "COMPLETED", run["error"]
    tests = next(e.data for e in events if e.type == "TestsCompleted")
    return run, events, tests


def _assert_no_internal_names(repo) -> dict[str, str]:
    tree = _merged_tree_text(repo)
    leaks = {f for f, text in tree.items() if "run-0" in text or "run_0" in text or "-imp" in text}
    assert not leaks, leaks
    return tree


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_javascript_package_gets_npm_files_and_its_own_tests_run(settings, tmp_path):
    repo = make_git_repo(tmp_path / "js-pkg", JS_PACKAGE)
    run, events, tests = await _run(settings, repo)

    assert (tests.own_before.total, tests.own_before.passed) == (2, 2), tests.own_before.output
    assert (tests.own_after.total, tests.own_after.passed) == (2, 2), tests.own_after.output
    tree = _assert_no_internal_names(repo)
    if ".github/dependabot.yml" in tree:
        assert 'package-ecosystem: "npm"' in tree[".github/dependabot.yml"]
        assert "pip" not in tree[".github/dependabot.yml"]
    if ".github/workflows/ci.yml" in tree:
        assert "setup-node" in tree[".github/workflows/ci.yml"] and "npm test" in tree[".github/workflows/ci.yml"]
        assert "python" not in tree[".github/workflows/ci.yml"]
    assert "mypy.ini" not in tree and ".pre-commit-config.yaml" not in tree
    written = [f for f in tree if f.endswith(".md") and f not in ("docs/specification.md",)]
    for f in written:
        if f in ("SECURITY.md", "CONTRIBUTING.md", "CHANGELOG.md"):
            assert "tiny-math" in tree[f], f
    assert {".github/dependabot.yml", ".github/workflows/ci.yml"} & set(tree), sorted(tree)
    _assert_generated_tests_in_the_ecosystem(tree, tests, ".repo-pilot/checks/", ".cjs")


def _assert_generated_tests_in_the_ecosystem(tree, tests, prefix: str, suffix: str) -> None:
    """No Python file is written into the repository, and no generated test is committed for a
    change that only adds files: such a test could only check that they exist (a maintainer would
    delete it). What ran (the smoke check) passed."""
    assert not [f for f in tree if f.endswith(".py")], sorted(tree)
    assert not [f for f in tree if f.startswith(prefix) and f.endswith(suffix)], sorted(tree)
    for g in tests.groups:
        if g.group != "own":
            assert g.failed == g.errors == 0, g.output


@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed")
async def test_rust_crate_gets_cargo_files_and_its_own_tests_run(settings, tmp_path):
    repo = make_git_repo(tmp_path / "rust-crate", RUST_CRATE)
    run, events, tests = await _run(settings, repo)

    assert (tests.own_before.total, tests.own_before.passed) == (2, 2), tests.own_before.output
    assert (tests.own_after.passed, tests.own_after.failed) == (2, 0), tests.own_after.output
    tree = _assert_no_internal_names(repo)
    if ".github/dependabot.yml" in tree:
        assert 'package-ecosystem: "cargo"' in tree[".github/dependabot.yml"]
    if ".github/workflows/ci.yml" in tree:
        assert "cargo test" in tree[".github/workflows/ci.yml"] and "python" not in tree[".github/workflows/ci.yml"]
    for f in ("SECURITY.md", "CONTRIBUTING.md"):
        if f in tree:
            assert "tiny_calc" in tree[f]
    assert "mypy.ini" not in tree
    _assert_generated_tests_in_the_ecosystem(tree, tests, "tests/repo_pilot_", ".rs")
