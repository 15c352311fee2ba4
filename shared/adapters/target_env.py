"""The interpreter a target repository's tests run with: its own cached virtualenv, holding what it
declares, and pytest: the project's own when it declares pytest, else the pytest Repo Pilot runs
with and what that requires, and nothing else (linked in: it works offline).

Nothing else of the host's or Repo Pilot's own environment is visible to the target's tests: the
env is made without system site-packages, and Repo Pilot's pip and build backends (links in the
env's `repo-pilot-tools`) are on its path only while pip installs (`TOOLS_VAR`, read by a `.pth`). A
suite importing a package Repo Pilot has but the project does not declare fails to import it, as
it would in the project's own CI.

Deciding what a repository declares (`read_declared`, `env_key`) is pure; building the env
(`python_for`) runs `python -m venv` and `pip install` through the sandbox, under a per-env lock,
into a temp directory renamed into place only once complete (a half-built env is never reused).

A lockfile decides the versions when there is one: `uv.lock` through `uv export --frozen` (it
follows the lock's markers, offline), `poetry.lock` and `pdm.lock` read as pins with their markers
(a project locked to pytest 8.4 must not run under 9.2). Without one, the declared requirements and
`requirements*.txt` (pinned or not) are installed as written.

Only the dependencies are installed, never the project itself: the env is shared by every
worktree with the same dependency files (before and after a change, and later runs), so an
installed copy of the project would shadow the worktree's code under test with a stale one.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import sys
import sysconfig
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from shared.common.pyparse import parse_python

from shared.adapters.sandbox import Sandbox

LOCKFILES = ("uv.lock", "poetry.lock", "pdm.lock")
# Extras (and PEP 735 dependency groups) that hold what a test suite needs.
TEST_EXTRAS = ("test", "tests", "testing", "dev")
COMPLETE_MARKER = ".repo-pilot-complete"
REQUIREMENTS_NAME = "repo-pilot-requirements.txt"
# Set only for pip's runs into a target env: its `.pth` then adds Repo Pilot's site-packages (pip,
# setuptools for `--no-build-isolation`); a test run never sets it.
TOOLS_VAR = "REPO_PILOT_INSTALLING"
ENV_SCHEME = "isolated-2"  # in the env key: envs built when Repo Pilot's packages were visible are not reused
INSTALL_TIMEOUT = 900.0
NOTE_TAIL = 600


@dataclass(frozen=True)
class TargetPython:
    executable: str
    note: str  # one line: which interpreter and why, for a reader of the test output
    plugins: tuple[str, ...] = ()  # pytest plugin modules the target declares (loaded with `-p`)


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
    import subprocess

    from shared.adapters.analyzers import tool_command

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


# -- I/O: read, build, reuse ----------------------------------------------------------------------


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


async def python_for(
    repo: Path,
    home: Path,
    sandbox: Sandbox,
    *,
    pip_options: Sequence[str] = (),
    pip_env: Mapping[str, str] | None = None,
    timeout: float = INSTALL_TIMEOUT,
) -> TargetPython:
    """The interpreter to run `repo`'s tests with (`_interpreter_for`), and the pytest plugins the
    target declares that it can import: Repo Pilot's own plugins (pytest-asyncio, xdist…) are never
    loaded into a target's suite, only those its dependency files name."""
    py = await _interpreter_for(
        repo, home, sandbox, pip_options=pip_options, pip_env=pip_env, timeout=timeout
    )
    declared = read_declared(read_dependency_files(repo), Path(repo).resolve())
    names = declared_names(declared)
    if not names or not getattr(sandbox, "shares_host_fs", True):
        return py
    plugins = await _pytest_plugins(py.executable, names, sandbox, Path(repo))
    return TargetPython(py.executable, py.note, plugins)


def declared_names(declared: Declared) -> set[str]:
    """Canonical distribution names of the requirements in `declared` (pure)."""
    names = set()
    for line in declared.lines:
        with contextlib.suppress(InvalidRequirement):
            names.add(canonicalize_name(Requirement(line).name))
    return names


_LIST_PLUGINS = (
    "import json, importlib.metadata as m\n"
    "print(json.dumps(sorted({(d.metadata['Name'] or '', e.module) for d in m.distributions()"
    " for e in d.entry_points if e.group == 'pytest11'})))"
)


async def _pytest_plugins(python: str, names: set[str], sandbox: Sandbox, repo: Path) -> tuple[str, ...]:
    """The `pytest11` entry-point modules `python` can import, of the distributions in `names`."""
    import json

    done = await sandbox.run([python, "-c", _LIST_PLUGINS], cwd=repo, timeout=60)
    if done.exit_code != 0:
        return ()
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return ()
    wanted = sorted({module for dist, module in found if canonicalize_name(dist) in names})
    return tuple([m for m in wanted if await _loads(python, m, sandbox)])


async def _loads(python: str, module: str, sandbox: Sandbox) -> bool:
    """Whether pytest starts with plugin `module` (a declared plugin may be broken with the pytest
    that is installed, e.g. pytest-flake8 on pytest 8: left out, so the rest of the suite runs)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="repo-pilot-plugin-") as empty:
        done = await sandbox.run(
            [python, "-m", "pytest", "-p", module, "--help"],
            cwd=Path(empty),
            timeout=60,
            env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )
    return done.exit_code == 0


async def _interpreter_for(
    repo: Path,
    home: Path,
    sandbox: Sandbox,
    *,
    pip_options: Sequence[str] = (),
    pip_env: Mapping[str, str] | None = None,
    timeout: float = INSTALL_TIMEOUT,
) -> TargetPython:
    """The interpreter to run `repo`'s tests with. Never raises for a failed install: that returns
    Repo Pilot's interpreter with a note holding the tail of pip's output.

    A venv under `home/envs/<env_key>` without system site-packages, holding the declared
    requirements, and Repo Pilot's pytest alone (`_link_runner`) when they name no pytest; built on
    first use and reused after. `pip_options` / `pip_env` reach pip only (tests pass `--no-index`,
    `--no-build-isolation`)."""
    if not getattr(sandbox, "shares_host_fs", True):
        return TargetPython(
            sys.executable, "image's python: the Docker sandbox has no network to install dependencies"
        )
    files = read_dependency_files(repo)
    declared = read_declared(files, Path(repo).resolve())
    if "uv.lock" in files:
        declared = await asyncio.to_thread(uv_export, Path(repo), files) or declared
    runner = None if "pytest" in declared_names(declared) else _pytest_runner()
    envs = Path(home) / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    pins = sorted(f"{d.metadata['Name']}=={d.version}" for d in runner or [])
    key = env_key(files, f"{sys.executable}\0{pins}")  # a new pytest here: a new env
    final, sources = envs / key, ", ".join(declared.sources) or "nothing declared"
    try:
        async with _locked(envs / f"{key}.lock", timeout + 60):
            if (final / COMPLETE_MARKER).is_file():
                return TargetPython(_python(final), f"env {key[:12]} reused ({sources})")
            started = time.monotonic()
            failure = await _build(
                final, declared, repo, sandbox, pip_options, pip_env or {}, timeout, runner
            )
    except TimeoutError:
        return TargetPython(
            sys.executable, f"env {key[:12]} is still being built elsewhere; Repo Pilot's python ran"
        )
    if failure is not None:
        return TargetPython(
            sys.executable, f"installing dependencies ({sources}) failed; Repo Pilot's python ran: {failure}"
        )
    return TargetPython(
        _python(final), f"env {key[:12]} built from {sources} in {time.monotonic() - started:.1f}s"
    )


async def install_project(
    python: str,
    repo: Path,
    sandbox: Sandbox,
    site: Path,
    *,
    pip_options: Sequence[str] = (),
    pip_env: Mapping[str, str] | None = None,
    timeout: float = INSTALL_TIMEOUT,
) -> str | None:
    """Install the project in `repo` itself (no dependencies) into `site`, for that checkout's test
    run only; None when it worked, else why not (one line).

    Suites that read their own package metadata (`importlib.metadata.version("toolz")`) fail unless
    the project is installed. The copy is built from the very checkout under test and `site` goes
    on PYTHONPATH, after the checkout itself (`python -m pytest` puts the repository first), so
    nothing stale shadows the code under test; the shared env stays free of any project."""
    repo = Path(repo)
    if not any((repo / f).is_file() for f in ("pyproject.toml", "setup.py", "setup.cfg")):
        return "no packaging metadata: the project is not installable"
    if not getattr(sandbox, "shares_host_fs", True):
        return "the Docker sandbox has no network to build the project"
    env = {"PIP_CACHE_DIR": str(site.parent / ".repo-pilot-pip-cache"), TOOLS_VAR: "1", **(pip_env or {})}
    cmd = [
        python,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-deps",
        "--quiet",
        *pip_options,
        "--target",
        str(site),
        str(repo),
    ]
    # First with the build backend at hand (setuptools, flit… through the env's parent site-packages:
    # no download, seconds), then with pip's build isolation when the backend is not there.
    fast = [*cmd[:-3], "--no-build-isolation", *cmd[-3:]] if "--no-build-isolation" not in cmd else cmd
    # `site` lies outside the checkout: a confining sandbox must be told to show it, or pip writes
    # into the view's own /tmp and the install is lost when the run ends.
    site.parent.mkdir(parents=True, exist_ok=True)
    writable = (str(site.parent),)
    done = await sandbox.run(fast, cwd=repo, timeout=timeout, env=env, writable=writable)
    if done.exit_code != 0 and not done.timed_out and fast is not cmd:
        shutil.rmtree(site, ignore_errors=True)
        # build isolation downloads the build backend: the network, as for any dependency install
        done = await sandbox.run(cmd, cwd=repo, timeout=timeout, env=env, writable=writable, network=True)
    if done.exit_code != 0 or done.timed_out:
        return "installing the project failed: " + _tail(done.stdout + "\n" + done.stderr)
    if not site.is_dir():
        return f"installing the project wrote nothing to {site}"
    return None


def _python(env: Path) -> str:
    return str(env / "bin" / "python")


async def _build(
    final: Path,
    declared: Declared,
    repo: Path,
    sandbox: Sandbox,
    pip_options: Sequence[str],
    pip_env: Mapping[str, str],
    timeout: float,
    runner: list[importlib.metadata.Distribution] | None = None,
) -> str | None:
    """Build the env into a temp directory and rename it to `final`; the failure's tail, or None.
    `runner` (pytest and what it requires) is linked in after pip's last run."""
    for stale in final.parent.glob(f"{final.name}.building-*"):  # left by a crash; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)  # no marker: never completed
    tmp = final.parent / f"{final.name}.building-{uuid.uuid4().hex[:8]}"
    try:
        # pip comes from this interpreter's site-packages through the .pth while installing: no ensurepip copy.
        made = await sandbox.run(
            [sys.executable, "-m", "venv", "--without-pip", str(tmp)],
            cwd=final.parent,
            timeout=120,
        )
        if made.exit_code != 0:
            return _tail(made.stdout + made.stderr)
        _link_install_tools(tmp, declared)
        if not declared.lines:
            return _complete(tmp, final, declared, runner)
        (tmp / REQUIREMENTS_NAME).write_text("\n".join(declared.lines) + "\n")
        env = {"PIP_CACHE_DIR": str(final.parent / ".pip-cache"), TOOLS_VAR: "1", **pip_env}
        cmd = [
            _python(tmp),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            *pip_options,
            "-r",
            str(tmp / REQUIREMENTS_NAME),
        ]
        # cwd is the repository: pip resolves relative local paths (`./libs/x`) against it.
        installed = await sandbox.run(
            cmd, cwd=Path(repo), timeout=timeout, env=env, network=True, host_fs=True
        )  # the index, local paths, the env
        if installed.exit_code != 0 or installed.timed_out:
            why = f"timed out after {timeout:g}s; " if installed.timed_out else ""
            return why + _tail(installed.stdout + "\n" + installed.stderr)
        return _complete(tmp, final, declared, runner)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename


def _complete(tmp: Path, final: Path, declared: Declared, runner: list | None) -> None:
    if runner:
        _link_runner(_site(tmp), runner)
    _retarget_scripts(tmp, final)
    (tmp / COMPLETE_MARKER).write_text("\n".join(declared.lines) + "\n")
    tmp.rename(final)


def _site(env: Path) -> Path:
    return Path(sysconfig.get_path("purelib", "venv", vars={"base": str(env), "platbase": str(env)}))


# What pip needs to install into an env (itself, and the build backends for `--no-build-isolation`).
INSTALL_TOOLS = ("pip", "setuptools", "wheel")
TOOLS_DIR = "repo-pilot-tools"


def _link_install_tools(env: Path, declared: Declared) -> None:
    """Links to Repo Pilot's pip, setuptools and wheel in `env/TOOLS_DIR`, on the env's path only
    while TOOLS_VAR is set (pip's runs; a `.pth` line starting with `import` runs at start-up). Only
    these: pip would take any other package it saw as already installed and leave it out of the env.
    A tool the project declares itself is left to pip to install."""
    tools = env / TOOLS_DIR
    tools.mkdir()
    wanted = [n for n in INSTALL_TOOLS if n == "pip" or n not in declared_names(declared)]
    for name in wanted:
        try:
            _link_distribution(tools, importlib.metadata.distribution(name))
        except importlib.metadata.PackageNotFoundError:
            continue
    line = (f"import os, sys; os.environ.get({TOOLS_VAR!r}) == '1' and "
            f"sys.path.append(os.path.join(sys.prefix, {TOOLS_DIR!r}))\n")  # fmt: skip
    (_site(env) / "_repo_pilot_tools.pth").write_text(line)


def _link_distribution(into: Path, dist: importlib.metadata.Distribution) -> None:
    """Symlinks in `into` to a distribution's top-level modules and metadata."""
    tops = {f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] not in ("..", "__pycache__")}
    for top in sorted(tops):
        source = Path(str(dist.locate_file(top)))
        if source.exists() and not (into / top).exists():
            (into / top).symlink_to(source)


def _closure(name: str) -> list[importlib.metadata.Distribution]:
    """Distribution `name` and everything it requires here (markers evaluated, no extras)."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = canonicalize_name(todo.pop())
        if key in seen:
            continue
        try:
            dist = importlib.metadata.distribution(key)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        for spec in dist.requires or []:
            with contextlib.suppress(InvalidRequirement):
                req = Requirement(spec)
                if req.marker is None or req.marker.evaluate({"extra": ""}):
                    todo.append(req.name)
    return list(seen.values())


def _pytest_runner() -> list[importlib.metadata.Distribution]:
    """The pytest Repo Pilot runs with and the distributions it requires, for a target that declares
    no pytest of its own."""
    return _closure("pytest")


def _link_runner(site: Path, dists: list[importlib.metadata.Distribution]) -> None:
    """Link each distribution's top-level modules and metadata into the env's `site`, unless the env
    installed its own copy (its declared `packaging` wins over pytest's). Done after pip's last run
    into the env: pip uninstalling a linked copy would delete Repo Pilot's files through the link."""
    have = {
        canonicalize_name(d.metadata["Name"] or "")
        for d in importlib.metadata.distributions(path=[str(site)])
    }
    for dist in dists:
        if canonicalize_name(dist.metadata["Name"] or "") not in have:
            _link_distribution(site, dist)


def _retarget_scripts(tmp: Path, final: Path) -> None:
    # Console scripts pip wrote carry the temp path in their shebang; after the rename they would
    # point at nothing.
    for script in (tmp / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if data.startswith(b"#!") or script.name.lower().startswith("activate"):
            script.write_bytes(data.replace(str(tmp).encode(), str(final).encode()))


def _tail(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    text = " | ".join(lines[-6:])
    return text if len(text) <= NOTE_TAIL else "…" + text[-NOTE_TAIL:]


@contextlib.asynccontextmanager
async def _locked(path: Path, timeout: float) -> AsyncIterator[None]:
    """An exclusive flock on `path`, polled so the event loop keeps running; TimeoutError after
    `timeout` seconds."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"lock {path} held for over {timeout:g}s") from None
                await asyncio.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
