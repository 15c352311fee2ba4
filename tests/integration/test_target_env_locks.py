"""A project's lockfile decides its test environment's versions: uv.lock through the real `uv
export`, poetry.lock and pdm.lock read as pins with their markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.target_deps import env_key, read_declared, read_dependency_files, uv_export

pytestmark = pytest.mark.integration

PYPROJECT = """\
[project]
name = "demo"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["iniconfig"]

[dependency-groups]
dev = ["pytest"]
"""

UV_LOCK = """\
version = 1
requires-python = ">=3.10"

[[package]]
name = "colorama"
version = "0.4.6"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "demo"
version = "0.1.0"
source = { editable = "." }
dependencies = [{ name = "iniconfig" }]

[package.dev-dependencies]
dev = [{ name = "pytest" }]

[package.metadata]
requires-dist = [{ name = "iniconfig" }]

[package.metadata.requires-dev]
dev = [{ name = "pytest" }]

[[package]]
name = "iniconfig"
version = "2.0.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "pytest"
version = "8.4.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "colorama", marker = "sys_platform == 'win32'" }, { name = "iniconfig" }]
"""

POETRY_LOCK = """\
[[package]]
name = "pytest"
version = "8.4.0"
optional = false
markers = {dev = "python_version >= \\"3.10\\""}

[[package]]
name = "iniconfig"
version = "2.0.0"
optional = false

[[package]]
name = "ujson"
version = "5.0.0"
optional = true
"""


def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_uv_lock_pins_follow_the_locks_markers(tmp_path):
    repo = _repo(tmp_path, {"pyproject.toml": PYPROJECT, "uv.lock": UV_LOCK})
    declared = uv_export(repo, read_dependency_files(repo))
    assert declared is not None and declared.sources == ("uv.lock",)
    assert "pytest==8.4.0" in declared.lines and "iniconfig==2.0.0" in declared.lines
    assert "colorama==0.4.6 ; sys_platform == 'win32'" in declared.lines  # not installed on Linux
    assert not any(line.startswith(("demo", "-e")) for line in declared.lines)  # never the project itself


def test_poetry_lock_pins_replace_the_ranges_and_a_changed_lock_is_a_new_env(tmp_path):
    repo = _repo(tmp_path, {"pyproject.toml": PYPROJECT, "poetry.lock": POETRY_LOCK})
    files = read_dependency_files(repo)
    declared = read_declared(files, repo)
    assert declared.sources == ("poetry.lock",)
    assert declared.lines == ('pytest==8.4.0 ; (python_version >= "3.10")', "iniconfig==2.0.0")
    relocked = {**files, "poetry.lock": POETRY_LOCK.replace("8.4.0", "8.3.0")}
    assert env_key(relocked) != env_key(files)


def test_an_unreadable_lock_falls_back_to_the_declared_requirements(tmp_path):
    repo = _repo(tmp_path, {"pyproject.toml": PYPROJECT, "pdm.lock": "not [toml"})
    declared = read_declared(read_dependency_files(repo), repo)
    assert declared.sources == ("pyproject.toml",) and "iniconfig" in declared.lines
