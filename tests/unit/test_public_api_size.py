"""`__all__` is proposed for a package that re-exports a few names, never generated for a namespace
of dozens: a maintainer declines a 75-name second list to keep in step (toolz.curried)."""

from __future__ import annotations

import pytest

import shared.engines.rules.facts as facts_mod
from shared.engines.rules.implement import public_api_additions
from shared.engines.rules.suggest import MAX_ALL_NAMES, features_improvements
from tests.conftest import make_git_repo

pytestmark = pytest.mark.unit


def _init(n: int) -> str:
    return "".join(f"from pkg.mod import name_{i}\n" for i in range(n))


def _repo(tmp_path, n: int):
    mod = "".join(f"def name_{i}():\n    return {i}\n\n\n" for i in range(n))
    return make_git_repo(tmp_path / f"p{n}", {"pkg/__init__.py": _init(n), "pkg/mod.py": mod})


def test_a_few_re_exports_get_an_all_and_a_namespace_of_dozens_does_not(tmp_path):
    few = features_improvements(facts_mod.collect(_repo(tmp_path, 3)))
    assert [i.rule for i in few] == ["check:public-api"] and "name_2" in few[0].changes
    many = features_improvements(facts_mod.collect(_repo(tmp_path, MAX_ALL_NAMES + 1)))
    assert many == []


def test_the_edit_agrees_with_the_proposal():
    """A package with a version to declare gets `__version__` only: its big `__all__` is not slipped in."""
    at_limit = facts_mod.parse_module("pkg/__init__.py", _init(MAX_ALL_NAMES))
    assert [a.split(" ")[0] for a in public_api_additions(at_limit, "1.0")] == ["__all__", "__version__"]
    over = facts_mod.parse_module("pkg/__init__.py", _init(MAX_ALL_NAMES + 1))
    assert public_api_additions(over, "1.0") == ['__version__ = "1.0"\n']
