"""What a target repository declares, read from its files without running anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.target_deps import env_key, is_dependency_file, read_declared, requirement_file_lines

pytestmark = pytest.mark.unit

REPO = Path("/repo")


def declared(files: dict[str, str]):
    return read_declared(files, REPO)


def test_a_repository_without_dependency_files_declares_nothing():
    assert declared({}).lines == ()


def test_a_pyproject_without_dependencies_declares_nothing():
    files = {"pyproject.toml": '[project]\nname = "demo"\nversion = "1"\n[tool.ruff]\nline-length = 99\n'}
    assert declared(files).lines == ()


def test_pyproject_dependencies_and_the_test_and_dev_extras_are_declared_but_not_docs():
    files = {"pyproject.toml": """
[project]
name = "demo"
dependencies = ["requests>=2", "attrs"]
[project.optional-dependencies]
test = ["hypothesis"]
dev = ["demo[test]", "black"]
docs = ["sphinx"]
"""}
    result = declared(files)
    # demo[test] names the project itself: installing it would shadow the worktree under test.
    assert result.lines == ("requests>=2", "attrs", "hypothesis", "black")
    assert "sphinx" not in result.lines and result.sources == ("pyproject.toml",)


def test_dependency_groups_contribute_their_plain_requirements():
    files = {"pyproject.toml": '[dependency-groups]\ntest = ["pytest-mock", {include-group = "lint"}]\n'}
    assert declared(files).lines == ("pytest-mock",)


def test_an_unparsable_pyproject_declares_nothing_instead_of_raising():
    assert declared({"pyproject.toml": "[project\nname ="}).lines == ()


def test_requirements_files_drop_comments_and_installs_of_the_project_itself():
    text = "# pinned\nflask==3.0  # web\n\n-e .\n.[dev]\n-r base.txt\n--constraint=c.txt\nnumpy \\\n  >=1.26\n"
    assert requirement_file_lines(text, REPO) == [
        "flask==3.0", f"-r {REPO / 'base.txt'}", f"--constraint {REPO / 'c.txt'}", "numpy    >=1.26"]


def test_requirements_files_are_declared_in_name_order_with_their_sources():
    files = {"requirements.txt": "flask\n", "requirements-dev.txt": "pytest-mock\n", "requirements-x.txt": "# none\n"}
    result = declared(files)
    assert result.lines == ("pytest-mock", "flask")
    assert result.sources == ("requirements-dev.txt", "requirements.txt")


def test_setup_cfg_install_requires_and_test_extras():
    files = {"setup.cfg": """
[metadata]
name = demo
[options]
install_requires =
    click>=8
    demo-helpers
[options.extras_require]
test = pytest-mock
docs = sphinx
"""}
    assert declared(files).lines == ("click>=8", "demo-helpers", "pytest-mock")


def test_setup_py_literal_requirements_are_read_without_running_it():
    files = {"setup.py": """
from setuptools import setup
setup(name="demo", install_requires=["six", "Demo[extra]"], extras_require={"dev": ["tox"], "doc": ["x"]})
raise SystemExit("never executed")
"""}
    assert declared(files).lines == ("six", "tox")


def test_setup_py_requirements_computed_at_run_time_are_not_seen():
    files = {"setup.py": "import setuptools\nsetuptools.setup(install_requires=open('r.txt').read().split())\n"}
    assert declared(files).lines == ()


def test_dependency_files_are_the_packaging_metadata_and_requirements_files():
    assert all(map(is_dependency_file, ["pyproject.toml", "setup.py", "setup.cfg", "requirements.txt",
                                        "requirements-dev.txt", "requirements/base.txt"]))
    assert not any(map(is_dependency_file, ["src/setup.py", "README.md", "docs/requirements.txt", "tox.ini"]))


def test_the_env_key_changes_with_any_dependency_file_and_with_the_interpreter():
    files = {"requirements.txt": "flask\n"}
    assert env_key(files, "/py") == env_key(dict(files), "/py")
    assert env_key(files, "/py") != env_key({"requirements.txt": "flask==3\n"}, "/py")
    assert env_key(files, "/py") != env_key({**files, "setup.cfg": ""}, "/py")
    assert env_key(files, "/py") != env_key(files, "/other/py")
