"""No module of Repo Pilot itself looks like a test file by the rule it applies to repositories
(shared.policy.paths.is_test_path): such a module would be skipped by the scanners and counted as
a test when Repo Pilot is run on its own code (shared/engines/rules/tests.py was one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.policy.paths import is_test_path

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_no_production_module_is_named_or_placed_like_a_test():
    modules = [p.relative_to(ROOT).as_posix() for top in ("shared", "services") for p in (ROOT / top).rglob("*.py")]
    assert modules
    # the demo repository is a target repository shipped as an example: its tests are tests
    production = [m for m in modules if not m.startswith("shared/examples/")]
    assert [m for m in production if is_test_path(m)] == []


def test_the_rule_would_have_caught_the_old_name():
    assert is_test_path("shared/engines/rules/tests.py")
