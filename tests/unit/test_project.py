"""Languages and the project's real name (engines/rules/project.py), and own-test summaries."""

from __future__ import annotations

import pytest

from shared.adapters.own_tests import counts_from_output
from shared.engines.rules.project import detect, detect_languages, is_internal_name, manifest_name

pytestmark = pytest.mark.unit


def test_languages_primary_first_manifest_wins():
    assert detect_languages(["Cargo.toml", "src/lib.rs", "a.py", "b.py", "c.py"]) == ["rust", "python"]
    assert detect_languages(["package.json", "index.ts"]) == ["javascript"]
    assert detect_languages(["go.mod", "main.go"]) == ["go"]
    assert detect_languages(["README.md"]) == []


def test_names_come_from_manifests():
    assert manifest_name({"package.json": '{"name": "@scope/pkg"}'}) == "@scope/pkg"
    assert manifest_name({"Cargo.toml": '[package]\nname = "crate_x"\n'}) == "crate_x"
    assert manifest_name({"go.mod": "module github.com/acme/widget/v2\n\ngo 1.22\n"}) == "widget"
    assert manifest_name({"pyproject.toml": '[project]\nname = "pyx"\n'}) == "pyx"
    assert manifest_name({"setup.cfg": "[metadata]\nname = cfgname\n"}) == "cfgname"
    assert manifest_name({"package.json": "not json"}) is None


def test_a_requirements_only_project_is_named_after_its_directory(tmp_path):
    root = tmp_path / "my-scripts"
    root.mkdir()
    (root / "requirements.txt").write_text("requests\n")
    project = detect(root, ["requirements.txt", "tool.py"])
    assert (project.name, project.language, project.dependabot_ecosystem) == ("my-scripts", "python", "pip")


def test_internal_names_are_recognised_and_never_used(tmp_path):
    assert is_internal_name("run-01a2b3c4-9c07-799b-9b2a-df2ba362032c-imp5")
    assert is_internal_name("x-imp12") and not is_internal_name("impala")
    root = tmp_path / "run-01a2b3c4-9c07-799b-9b2a-df2ba362032c-imp5"
    root.mkdir()
    assert detect(root, ["a.py"]).name == "project"


@pytest.mark.parametrize(("runner", "code", "output", "expected"), [
    ("node", 0, "# tests 3\n# suites 0\n# pass 3\n# fail 0\n", (3, 3, 0, 0)),
    ("node", 1, "ℹ tests 2\nℹ pass 1\nℹ fail 1\n", (2, 1, 1, 0)),
    ("node", 1, "Tests:       1 failed, 4 passed, 5 total\n", (5, 4, 1, 0)),
    ("cargo", 0, "test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured\n"
                 "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured\n", (4, 3, 0, 0)),
    ("cargo", 101, "error[E0425]: cannot find value `x`\n", (1, 0, 0, 1)),
    ("go", 1, "--- PASS: TestA (0.00s)\n--- FAIL: TestB (0.00s)\n", (2, 1, 1, 0)),
    ("node", 1, "custom script failed\n", (1, 0, 1, 0)),
    ("node", 0, "  ✓ adds\n\n  111 passing (9ms)\n", (111, 111, 0, 0)),
    ("node", 1, "  3 passing (9ms)\n  1 pending\n  2 failing\n\n  1) add\n", (6, 3, 2, 0)),
    ("node", 0, " ✓ test/a.test.ts (3)\n\n Test Files  1 passed (1)\n      Tests  3 passed (3)\n", (3, 3, 0, 0)),
    ("node", 1, " Test Files  1 failed | 1 passed (2)\n      Tests  1 failed | 11 passed (12)\n", (12, 11, 1, 0)),
    ("node", 0, "index.js\n• • •   (3 / 3)\n\n  Total:     32\n  Passed:    32\n  Skipped:   0\n", (32, 32, 0, 0)),
    ("node", 1, "  Total:     5\n  Passed:    3\n  Skipped:   1\n", (5, 3, 1, 0)),
    ("node", 1, "  ✘ [fail]: adds\n  ─\n\n  1 test failed\n  4 tests passed\n", (5, 4, 1, 0)),
])
def test_own_test_summaries(runner, code, output, expected):
    r = counts_from_output(runner, code, output)
    assert (r.total, r.passed, r.failed, r.errors) == expected, r.output
