"""The interpreter a target repository's tests run with: its own cached virtualenv, holding what it
declares, and pytest: the project's own when it declares pytest, else the pytest Repo Pilot runs
with and what that requires, and nothing else (linked in: it works offline).

Nothing else of the host's or Repo Pilot's own environment is visible to the target's tests: the
env is made without system site-packages, and Repo Pilot's pip and build backends (links in the
env's `repo-pilot-tools`) are on its path only while pip installs (`TOOLS_VAR`, read by a `.pth`). A
suite importing a package Repo Pilot has but the project does not declare fails to import it, as
it would in the project's own CI.

What a repository declares is read in target_deps.py (`read_declared`, `env_key`); building the env
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

import asyncio
import contextlib
import fcntl
import importlib.metadata
import os
import shutil
import sys
import sysconfig
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


from shared.adapters.sandbox import Sandbox
from shared.adapters.target_deps import (
    Declared,
    declared_names,
    env_key,
    read_declared,
    read_dependency_files,
    uv_export,
)

COMPLETE_MARKER = ".repo-pilot-complete"
REQUIREMENTS_NAME = "repo-pilot-requirements.txt"
# Set only for pip's runs into a target env: its `.pth` then adds Repo Pilot's site-packages (pip,
# setuptools for `--no-build-isolation`); a test run never sets it.
TOOLS_VAR = "REPO_PILOT_INSTALLING"
INSTALL_TIMEOUT = 900.0
NOTE_TAIL = 600


@dataclass(frozen=True)
class TargetPython:
    executable: str
    note: str  # one line: which interpreter and why, for a reader of the test output
    plugins: tuple[str, ...] = ()  # pytest plugin modules the target declares (loaded with `-p`)


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
