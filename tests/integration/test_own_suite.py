"""A target's own test suite, counted honestly: its pytest config, conftest and declared plugins,
never Repo Pilot's plugins; a suite that cannot run is errors with the reason, never 0/0 passed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from shared.adapters.own_tests import run_ecosystem_suite
from shared.adapters.sandbox import LocalSandbox, pytest_result, run_pytest
from shared.adapters.target_env import python_for
from shared.policy.review import did_not_run, own_tests_regressed
from tests.conftest import make_git_repo
from tests.integration.test_target_env import OFFLINE

pytestmark = pytest.mark.integration


def plugin_package(root: Path) -> Path:
    """`pytest-stamp`: a real pytest plugin (a `pytest11` entry point) adding a `stamp` fixture."""
    (root / "pytest_stamp").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "pytest-stamp"\nversion = "0.1"\n'
        '[project.entry-points.pytest11]\nstamp = "pytest_stamp.plugin"\n'
    )
    (root / "pytest_stamp" / "__init__.py").write_text("")
    (root / "pytest_stamp" / "plugin.py").write_text(
        "import pytest\n\n\n@pytest.fixture\ndef stamp():\n    return 'stamped'\n"
    )
    return root


async def test_strict_target_with_conftest_and_plugin_is_counted_correctly(tmp_path):
    plugin = plugin_package(tmp_path / "pytest-stamp")
    repo = make_git_repo(tmp_path / "strict", {
        # Any warning is an error: Repo Pilot's pytest-asyncio (its deprecation warning) would break it.
        "pyproject.toml": '[project]\nname = "strict"\nversion = "1"\n'
                          f'[project.optional-dependencies]\ntest = ["pytest-stamp @ {plugin.as_uri()}"]\n'
                          '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\naddopts = "-ra"\n'
                          'markers = ["slow: slow tests"]\n',
        "strict.py": "def double(x):\n    return 2 * x\n",
        "tests/conftest.py": "import pytest\n\n\n@pytest.fixture\ndef two():\n    return 2\n",
        "tests/test_strict.py": (
            "import pytest\nfrom strict import double\n\n\n"
            "def test_conftest(two):\n    assert double(two) == 4\n\n\n"
            "def test_plugin(stamp):\n    assert stamp == 'stamped'\n\n\n"
            "@pytest.mark.slow\ndef test_marked():\n    assert True\n\n\n"
            "def test_fails():\n    assert double(1) == 3\n"
        ),
    })
    sandbox = LocalSandbox()
    py = await python_for(repo, tmp_path / "home", sandbox, **OFFLINE)
    assert py.plugins == ("pytest_stamp.plugin",), py.note

    result = await run_pytest(sandbox, repo, python=py.executable, plugins=py.plugins)

    assert (result.total, result.passed, result.failed, result.errors) == (4, 3, 1, 0), result.output
    assert "asyncio" not in result.output
    assert not did_not_run(result.model_dump())


async def test_a_suite_that_cannot_be_collected_reports_errors_with_the_reason(tmp_path):
    repo = make_git_repo(tmp_path / "broken", {
        "tests/test_ok.py": "def test_ok():\n    assert True\n",
        "tests/test_broken.py": "import missing_module_xyz\n\n\ndef test_x():\n    assert True\n",
    })
    result = await run_pytest(LocalSandbox(), repo)
    assert result.errors >= 1 and result.passed == 0, result
    assert "missing_module_xyz" in result.output
    assert did_not_run(result.model_dump())
    tests = {"own_before": result.model_dump(), "own_after": result.model_dump()}
    assert "could not run" in own_tests_regressed(tests)


async def test_a_config_error_is_an_error_not_zero_of_zero(tmp_path):
    # An option only a plugin the target does not declare would understand: pytest exits 4.
    repo = make_git_repo(tmp_path / "badconf", {
        "pytest.ini": "[pytest]\naddopts = --no-such-option\n",
        "tests/test_ok.py": "def test_ok():\n    assert True\n",
    })
    result = await run_pytest(LocalSandbox(), repo)
    assert (result.errors, result.passed) == (1, 0)
    assert "could not run" in result.output and "--no-such-option" in result.output
    assert did_not_run(result.model_dump())


def test_pytest_result_decisions():
    nothing = pytest_result("own", 5, None, "no JUnit report", "")
    assert (nothing.total, nothing.errors) == (0, 0) and nothing.output.startswith("no tests collected")
    internal = pytest_result("own", 3, None, "no JUnit report", "INTERNALERROR> boom")
    assert internal.errors == 1 and "internal error" in internal.output


async def test_a_suite_reading_its_own_metadata_passes_with_the_project_installed_per_run(tmp_path):
    from shared.adapters.target_env import install_project

    repo = make_git_repo(tmp_path / "meta", {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
                          '[project]\nname = "metapkg"\nversion = "2.5"\n',
        "metapkg/__init__.py": "VALUE = 1\n",
        "tests/test_meta.py": "import importlib.metadata\nimport metapkg\n\n\n"
                              "def test_version():\n    assert importlib.metadata.version('metapkg') == '2.5'\n\n\n"
                              "def test_code_is_the_checkouts():\n"
                              f"    assert metapkg.__file__.startswith({str(tmp_path / 'meta')!r})\n",
    })
    sandbox = LocalSandbox()
    bare = await run_pytest(sandbox, repo)
    assert (bare.passed, bare.failed) == (1, 1), bare.output

    site = tmp_path / "site"
    assert await install_project(sys.executable, repo, sandbox, site, **OFFLINE) is None
    assert (site / "metapkg-2.5.dist-info").is_dir()  # kept outside the sandbox's view of /tmp
    result = await run_pytest(sandbox, repo, pythonpath=str(site))
    assert (result.passed, result.failed) == (2, 0), result.output


async def test_a_src_layout_project_is_importable_by_its_suite_once_installed(tmp_path):
    """Only the installed copy puts a `src/` package on the path (tkem/cachetools: 13 collection
    errors, "No module named 'cachetools'", when the install was lost)."""
    from shared.adapters.target_env import install_project

    repo = make_git_repo(tmp_path / "srcpkg", {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
                          '[project]\nname = "srcpkg"\nversion = "1.0"\n[tool.setuptools.packages.find]\nwhere = ["src"]\n',
        "src/srcpkg/__init__.py": "def one():\n    return 1\n",
        "tests/test_one.py": "from srcpkg import one\n\n\ndef test_one():\n    assert one() == 1\n",
    })
    sandbox = LocalSandbox()
    site = tmp_path / "project" / "site"
    assert await install_project(sys.executable, repo, sandbox, site, **OFFLINE) is None
    result = await run_pytest(sandbox, repo, pythonpath=str(site))
    assert (result.passed, result.failed, result.errors) == (1, 0, 0), result.output


# -- other ecosystems: dependencies first, with the network; then the tests, without --------------

UNRUNNABLE = {
    # a dependency that cannot be fetched: `cargo fetch` fails, `cargo test --offline` cannot build
    "rust": ("cargo", {"Cargo.toml": '[package]\nname = "needs_dep"\nversion = "0.1.0"\nedition = "2021"\n\n'
                                     '[dependencies]\nmissing = { git = "http://127.0.0.1:9/missing.git" }\n',
                       "src/lib.rs": "pub fn one() -> i32 { 1 }\n"},
             ["could not run", "`cargo fetch` failed"]),
    # a test runner that never got installed: the shell's exit 127 is no failing test
    "javascript": ("npm", {"package.json": '{"name": "p", "version": "1.0.0", "scripts": {"test": "mocha"},\n'
                                           ' "devDependencies": {"mocha": "file:./no-such-dir"}}\n',
                           "index.js": "module.exports = 1;\n"},
                   ["could not run: the test command was not found (exit 127)", "mocha: not found"]),
}


@pytest.mark.parametrize("language", sorted(UNRUNNABLE))
async def test_a_suite_that_cannot_run_is_not_run_and_says_why(language, tmp_path):
    tool, files, said = UNRUNNABLE[language]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    repo = make_git_repo(tmp_path / language, files)
    result = await run_ecosystem_suite(LocalSandbox(), repo, language, timeout=300)
    assert (result.total, result.passed, result.failed, result.errors) == (1, 0, 0, 1), result.output
    assert all(words in result.output for words in said), result.output
