"""A target's own virtualenv for real: venv + pip through the LocalSandbox, a local package as
the dependency, no network (`PIP_NO_INDEX`, and no build isolation: setuptools and wheel come
from Repo Pilot's environment, visible to pip only while it installs). Nothing else of Repo
Pilot's environment is visible to the target's tests."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from shared.adapters.sandbox import LocalSandbox, run_pytest
from shared.adapters.target_env import COMPLETE_MARKER, python_for
from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration

OFFLINE = {"pip_options": ("--no-build-isolation",), "pip_env": {"PIP_NO_INDEX": "1"}}


def local_package(root: Path, name: str) -> Path:
    """A setuptools project `name` whose module holds ANSWER = 42."""
    (root / name).mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "0.1"\n'
    )
    (root / name / "__init__.py").write_text("ANSWER = 42\n")
    return root


def target_repo(path: Path, requirement: str) -> Path:
    return make_git_repo(path, {
        "pyproject.toml": f'[project]\nname = "target"\nversion = "1.0"\ndependencies = ["{requirement}"]\n',
        "target.py": "from localdep import ANSWER\n\n\ndef answer():\n    return ANSWER\n",
        "tests/test_target.py": "from target import answer\n\n\ndef test_answer():\n    assert answer() == 42\n",
    })


@pytest.fixture
def localdep_repo(tmp_path) -> Path:
    dep = local_package(tmp_path / "localdep", "localdep")
    return target_repo(tmp_path / "target", f"localdep @ {dep.as_uri()}")


async def test_the_target_env_makes_a_suite_pass_that_fails_to_import_without_it(localdep_repo, tmp_path):
    sandbox, home = LocalSandbox(), tmp_path / "home"

    plain = await run_pytest(sandbox, localdep_repo)
    assert plain.errors == 1 and plain.passed == 0 and "localdep" in plain.output

    py = await python_for(localdep_repo, home, sandbox, **OFFLINE)
    assert py.executable != sys.executable and Path(py.executable).is_relative_to(home / "envs")
    assert "built from pyproject.toml" in py.note

    result = await run_pytest(sandbox, localdep_repo, python=py.executable)
    assert (result.passed, result.failed, result.errors) == (1, 0, 0), result.output


async def test_the_env_is_reused_not_rebuilt_and_no_half_built_env_is_left(localdep_repo, tmp_path):
    sandbox, home = LocalSandbox(), tmp_path / "home"
    first = await python_for(localdep_repo, home, sandbox, **OFFLINE)
    env = Path(first.executable).parent.parent
    marker_mtime = (env / COMPLETE_MARKER).stat().st_mtime_ns
    installed = next(env.glob("lib/python*/site-packages/localdep"))
    installed_mtime = installed.stat().st_mtime_ns

    second = await python_for(localdep_repo, home, sandbox, **OFFLINE)

    assert second.executable == first.executable and "reused" in second.note
    assert (env / COMPLETE_MARKER).stat().st_mtime_ns == marker_mtime
    assert installed.stat().st_mtime_ns == installed_mtime
    assert not list((home / "envs").glob("*.building-*"))


async def test_two_concurrent_callers_build_the_env_once(localdep_repo, tmp_path):
    sandbox, home = LocalSandbox(), tmp_path / "home"
    a, b = await asyncio.gather(*(python_for(localdep_repo, home, sandbox, **OFFLINE) for _ in range(2)))
    assert a.executable == b.executable != sys.executable
    assert sorted(py.note.split()[2] for py in (a, b)) == ["built", "reused"]
    assert len([p for p in (home / "envs").iterdir() if p.is_dir() and not p.name.startswith(".")]) == 1


async def test_a_broken_requirement_falls_back_to_repo_pilots_python_with_pips_words(tmp_path):
    repo = make_git_repo(tmp_path / "broken", {
        "requirements.txt": "nonexistent-package-xyz==0.0.1\n",
        "tests/test_x.py": "def test_x():\n    assert True\n",
    })
    home = tmp_path / "home"

    py = await python_for(repo, home, LocalSandbox(), **OFFLINE)

    assert py.executable == sys.executable
    assert "failed" in py.note and "nonexistent-package-xyz" in py.note and "\n" not in py.note
    assert not [p for p in (home / "envs").iterdir() if p.is_dir() and not p.name.startswith(".")]


async def test_a_repository_without_dependencies_gets_pytest_alone(tmp_path):
    repo = make_git_repo(tmp_path / "plain", {"pyproject.toml": '[project]\nname = "plain"\nversion = "1"\n'})
    py = await python_for(repo, tmp_path / "home", LocalSandbox())
    assert py.executable != sys.executable and Path(py.executable).is_relative_to(tmp_path / "home" / "envs")
    assert "nothing declared" in py.note


UNDECLARED = """\
import importlib

import pytest


@pytest.mark.parametrize("name", ["yaml", "pydantic", "hypothesis", "pytest_asyncio"])
def test_repo_pilots_own_packages_are_not_importable(name):
    with pytest.raises(ImportError):
        importlib.import_module(name)


def test_what_pytest_needs_is_there():
    import pluggy  # noqa: F401
"""


@pytest.mark.parametrize("declares", ["nothing", "a dependency"])
async def test_packages_repo_pilot_has_but_the_target_does_not_declare_cannot_be_imported(tmp_path, declares):
    import yaml  # noqa: F401  # Repo Pilot has it: the point is that the target does not see it

    files = {"tests/test_undeclared.py": UNDECLARED}
    if declares == "nothing":
        repo = make_git_repo(tmp_path / "bare", files)
    else:
        dep = local_package(tmp_path / "localdep", "localdep")
        repo = make_git_repo(tmp_path / "dep", {**files, "requirements.txt": f"localdep @ {dep.as_uri()}\n"})
    sandbox = LocalSandbox()
    py = await python_for(repo, tmp_path / "home", sandbox, **OFFLINE)
    assert py.executable != sys.executable, py.note

    result = await run_pytest(sandbox, repo, python=py.executable)
    assert (result.passed, result.failed, result.errors) == (5, 0, 0), result.output
