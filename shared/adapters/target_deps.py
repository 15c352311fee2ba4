"""What a target repository declares it needs, read from its files without running any of its code:
packaging metadata (`[project]`, setup.cfg, literal setup.py), `requirements*.txt` (with `-r`), test
extras and dependency groups, and a lockfile when there is one (`uv.lock` through `uv export
--frozen`, the one command here; `poetry.lock` and `pdm.lock` read as pins with their markers).
Building the env from it is target_env.py.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import hashlib
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from shared.adapters.analyzers import tool_command
from shared.common.pyparse import parse_python

LOCKFILES = ("uv.lock", "poetry.lock", "pdm.lock")
# Extras (and PEP 735 dependency groups) that hold what a test suite needs.
TEST_EXTRAS = ("test", "tests", "testing", "dev")
ENV_SCHEME = "isolated-2"  # in the env key: envs built when Repo Pilot's packages were visible are not reused


@dataclass(frozen=True)
class Declared:
    lines: tuple[str, ...]  # one pip requirements file's lines
    sources: tuple[str, ...]  # the files they came from


# -- pure: what a repository declares -------------------------------------------------------------


def is_dependency_file(rel: str) -> bool:
    """True for the files whose contents decide the env: packaging metadata and requirements files."""
    path = PurePosixPath(rel)
    if len(path.parts) == 1:
        return path.name in ("pyproject.toml", "setup.py", "setup.cfg", *LOCKFILES) or (
            path.name.startswith("requirements") and path.suffix == ".txt"
        )
    # requirements/base.txt and friends, reached through `-r` from a top-level file.
    return len(path.parts) == 2 and path.parts[0] == "requirements" and path.suffix == ".txt"


def env_key(files: Mapping[str, str], interpreter: str = sys.executable) -> str:
    """sha256 of the dependency files' paths and contents and of the base interpreter (an env is
    only valid for the Python it was made from)."""
    digest = hashlib.sha256(f"{ENV_SCHEME}\0{interpreter}\0{sys.version}\0".encode())
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]}\0".encode())
    return digest.hexdigest()


def read_declared(files: Mapping[str, str], repo: Path) -> Declared:
    """The third-party requirements `files` (relative path -> text) declare, as requirements-file
    lines; references to the project itself are left out (see the module docstring). `-r`/`-c`
    paths become absolute under `repo` so the lines can live in a file elsewhere."""
    for lockfile in ("poetry.lock", "pdm.lock"):  # uv.lock: `uv_export` (I/O) reads it
        if lockfile in files:
            pins = lock_pins(files[lockfile], own_name(files))
            if pins:
                return Declared(tuple(pins), (lockfile,))
    own: set[str] = set()
    requirements: list[tuple[str, list[str]]] = []
    if "pyproject.toml" in files:
        name, reqs = _from_pyproject(files["pyproject.toml"])
        own |= {name} if name else set()
        requirements.append(("pyproject.toml", reqs))
    if "setup.cfg" in files:
        name, reqs = _from_setup_cfg(files["setup.cfg"])
        own |= {name} if name else set()
        requirements.append(("setup.cfg", reqs))
    if "setup.py" in files:
        name, reqs = _from_setup_py(files["setup.py"])
        own |= {name} if name else set()
        requirements.append(("setup.py", reqs))
    lines: list[str] = []
    sources: list[str] = []
    for source, reqs in requirements:
        kept = [r for r in dict.fromkeys(reqs) if not _names_project(r, own)]
        if kept:
            sources.append(source)
            lines.extend(kept)
    for rel in sorted(files):
        if "/" not in rel and rel.startswith("requirements") and rel.endswith(".txt"):
            kept = requirement_file_lines(files[rel], repo)
            if kept:
                sources.append(rel)
                lines.extend(kept)
    return Declared(tuple(lines), tuple(sources))


def own_name(files: Mapping[str, str]) -> str | None:
    """The project's own distribution name from pyproject.toml (`[project]` or poetry's table)."""
    try:
        data = tomllib.loads(files.get("pyproject.toml", ""))
    except tomllib.TOMLDecodeError:
        return None
    return (data.get("project") or {}).get("name") or ((data.get("tool") or {}).get("poetry") or {}).get(
        "name"
    )


def lock_pins(text: str, own: str | None) -> list[str]:
    """`name==version ; marker` for every package of a poetry.lock or pdm.lock (pure); the project
    itself and packages the lock marks optional-only are left out. [] for a lock that is not TOML."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []
    pins = []
    for package in data.get("package") or []:
        name, version = package.get("name"), package.get("version")
        if not name or not version or (own and canonicalize_name(name) == canonicalize_name(own)):
            continue
        if package.get("optional") is True:
            continue
        marker = package.get("markers", package.get("marker"))
        if isinstance(marker, dict):  # poetry 2: a marker per group; any group's marker will do
            marker = " or ".join(f"({m})" for m in marker.values()) if marker else None
        pins.append(
            f"{name}=={version}" + (f" ; {marker}" if isinstance(marker, str) and marker.strip() else "")
        )
    return pins


def uv_export_command(files: Mapping[str, str]) -> list[str]:
    """The `uv export` arguments for this project's lock: frozen (no resolution, offline), no hashes,
    the default groups (uv's `dev`) plus the test extras the project defines (pure)."""
    try:
        extras = (tomllib.loads(files.get("pyproject.toml", "")).get("project") or {}).get(
            "optional-dependencies"
        ) or {}
    except tomllib.TOMLDecodeError:
        extras = {}
    cmd = [
        "export",
        "--frozen",
        "--no-hashes",
        "--no-emit-project",
        "--format",
        "requirements-txt",
        "--quiet",
    ]
    return cmd + [arg for name in TEST_EXTRAS if name in extras for arg in ("--extra", name)]


def uv_export(repo: Path, files: Mapping[str, str]) -> Declared | None:
    """The pins of `repo`'s uv.lock (`uv export`), or None when it cannot be read (then the
    declared requirements are used)."""
    done = subprocess.run([*tool_command("uv"), *uv_export_command(files)], cwd=repo, capture_output=True,
                          text=True, timeout=120, check=False, env={"PATH": os.environ.get("PATH", os.defpath),
                                                                    "UV_OFFLINE": "1", "UV_NO_CONFIG": "1"})  # fmt: skip
    lines = [ln for ln in requirement_file_lines(done.stdout, repo) if not ln.startswith("-e ")]
    return Declared(tuple(lines), ("uv.lock",)) if done.returncode == 0 and lines else None


def requirement_file_lines(text: str, repo: Path) -> list[str]:
    """A requirements file's meaningful lines: comments, blanks and installs of the project
    itself (`.`, `-e .[dev]`) dropped; `-r`/`-c` targets made absolute under `repo`."""
    out = []
    for raw in re.sub(r"\\\n", " ", text).splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line or re.fullmatch(r"(?:(?:-e|--editable)\s*=?\s*)?(?:file:)?\.(?:/)?(?:\[[^\]]*\])?", line):
            continue
        include = re.fullmatch(r"(-r|--requirement|-c|--constraint)\s*=?\s*(\S+)", line)
        if include and "://" not in include[2]:
            line = f"{include[1]} {repo / include[2]}"
        out.append(line)
    return out


def _from_pyproject(text: str) -> tuple[str | None, list[str]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None, []  # pip would fail on it as well; the target's own test run shows why
    project = data.get("project") or {}
    reqs = list(project.get("dependencies") or [])
    extras = project.get("optional-dependencies") or {}
    groups = data.get("dependency-groups") or {}
    for name in TEST_EXTRAS:
        reqs += list(extras.get(name) or [])
        # Groups may include other groups as tables; the plain strings are what pip can take.
        reqs += [r for r in groups.get(name) or [] if isinstance(r, str)]
    return project.get("name"), [r for r in reqs if isinstance(r, str)]


def _from_setup_cfg(text: str) -> tuple[str | None, list[str]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None, []
    values = [parser.get("options", "install_requires", fallback="")]
    values += [parser.get("options.extras_require", name, fallback="") for name in TEST_EXTRAS]
    values.append(parser.get("options", "tests_require", fallback=""))
    reqs = [line.strip() for value in values for line in value.splitlines() if line.strip()]
    return parser.get("metadata", "name", fallback=None), [r for r in reqs if not r.startswith("#")]


def _from_setup_py(text: str) -> tuple[str | None, list[str]]:
    """Literal `install_requires` / `tests_require` / test extras of a `setup(...)` call; anything
    computed at run time (read from a file, a variable) is not seen."""
    try:
        tree = parse_python(text)
    except SyntaxError:
        return None, []
    name, reqs = None, []
    for node in ast.walk(tree):
        func = getattr(node, "func", None)
        if not isinstance(node, ast.Call) or getattr(func, "id", getattr(func, "attr", None)) != "setup":
            continue
        for kw in node.keywords:
            value = _literal(kw.value)
            if kw.arg == "name" and isinstance(value, str):
                name = value
            elif kw.arg in ("install_requires", "tests_require"):
                reqs += _strings(value)
            elif kw.arg == "extras_require" and isinstance(value, dict):
                reqs += [r for extra in TEST_EXTRAS for r in _strings(value.get(extra))]
    return name, reqs


def _literal(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list | tuple) else []


def _names_project(requirement: str, own: set[str]) -> bool:
    try:
        return canonicalize_name(Requirement(requirement).name) in {canonicalize_name(n) for n in own}
    except InvalidRequirement:
        return False  # pip reports it, with its own words


# -- reading them --------------------------------------------------------------------------------


def read_dependency_files(repo: Path) -> dict[str, str]:
    """The repository's dependency files (see `is_dependency_file`), relative path -> text."""
    repo = Path(repo)
    candidates = [*repo.glob("*"), *repo.glob("requirements/*.txt")]
    return {
        p.relative_to(repo).as_posix(): p.read_text(errors="replace")
        for p in candidates
        if p.is_file() and is_dependency_file(p.relative_to(repo).as_posix())
    }


def same_dependencies(a: Path, b: Path) -> bool:
    """True when two checkouts would get the same env."""
    return read_dependency_files(a) == read_dependency_files(b)


def declared_names(declared: Declared) -> set[str]:
    """Canonical distribution names of the requirements in `declared` (pure)."""
    names = set()
    for line in declared.lines:
        with contextlib.suppress(InvalidRequirement):
            names.add(canonicalize_name(Requirement(line).name))
    return names
