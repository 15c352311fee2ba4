"""The Sandbox port: where tests and generated code run (DESIGN section 4).

`DockerSandbox` (no network, memory/CPU/process limits, killed at the timeout) when a Docker
engine answers; otherwise `LocalSandbox`: a subprocess in its own process group with resource
limits, a throw-away HOME and an environment holding no secrets. `run_pytest` runs a suite in
either and reads the counts from the JUnit XML report.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from collections.abc import Sequence

from shared.adapters.junit import JUnitError, JUnitTotals, read_junit
from shared.common.redaction import redact
from shared.common.tasks import despite_cancel
from shared.common.telemetry import sandbox_span
from shared.events.run import TestGroupResult
from shared.ports.sandbox import Sandbox, SandboxResult

log = logging.getLogger(__name__)

# What a package install needs to reach an index from the user's machine (pip and uv configuration,
# proxies, CA bundles), so a target env or a task's `uv venv && uv pip install` works inside the
# sandbox (shared/adapters/target_env.py, the generator's run_tests.sh). Credentials are still
# scrubbed by SECRET_PATTERNS below; an index or proxy URL with user:password in it would reach the
# code under test too: give installers credentials through a keyring or netrc instead.
PACKAGE_INSTALL_ENV = (
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST", "PIP_CERT",
    "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_RETRIES",
    "PIP_NO_INDEX", "PIP_CONFIG_FILE",
    "UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_NO_INDEX",
    "UV_INDEX_STRATEGY", "UV_INSECURE_HOST", "UV_NATIVE_TLS", "UV_OFFLINE", "UV_HTTP_TIMEOUT",
    "UV_CACHE_DIR", "UV_PYTHON", "UV_PYTHON_DOWNLOADS", "UV_PYTHON_INSTALL_DIR", "UV_CONFIG_FILE",
    "UV_NO_CONFIG",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
)
# Variables copied from the parent; everything else is dropped (an allow-list, not a deny-list).
ENV_ALLOW = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "SYSTEMROOT", *PACKAGE_INSTALL_ENV)
# Never passed, even when a caller hands them in explicitly.
SECRET_PATTERNS = (
    "OPENAI_API_KEY",
    "GITHUB_TOKEN",
    "*_TOKEN",
    "*_KEY",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*CREDENTIAL*",
    "DATABASE_URL",
    "NATS_URL",
    "AWS_*",
)
OUTPUT_TAIL = 4000


def is_secret(name: str) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in SECRET_PATTERNS)


def scrubbed_env(extra: dict | None = None, home: str | None = None) -> dict[str, str]:
    """The allow-listed parent variables plus `extra`, minus anything that looks like a secret."""
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        {
            "PYTHONDONTWRITEBYTECODE": "1",  # keep the repository's status clean
            "PYTHONUNBUFFERED": "1",
            "PIP_NO_INPUT": "1",
            "GIT_TERMINAL_PROMPT": "0",
        }
    )
    if home:
        env.update(
            {"HOME": home, "TMPDIR": str(Path(home) / "tmp"), "XDG_CACHE_HOME": str(Path(home) / ".cache")}
        )
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    return {k: v for k, v in env.items() if not is_secret(k)}


def tail(text: str, limit: int = OUTPUT_TAIL) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


# -- local subprocess -------------------------------------------------------------------------


def _user_process_count() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


def _limit(kind: int, value: int) -> None:
    _soft, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


class LocalSandbox:
    """A subprocess confined as far as this machine allows (shared/adapters/confine.py), with time,
    memory, CPU, process and file-size limits and no secrets.

    `isolation` (default: `REPO_PILOT_ISOLATION`, else `auto`): `auto` (bubblewrap, else mountns,
    else unshare, else none; what is not confined is logged once), or one of `bwrap`, `mountns`,
    `unshare`, `none` (which must then work here). No network unless a call asks for it (`network=True`,
    e.g. installing dependencies). Limits: `memory_mb` of data (heap and private writable mappings), CPU seconds (the wall
    timeout also applies), `max_processes` (a pids cgroup where one can be made, which binds root
    too; else RLIMIT_NPROC beyond what the user already runs), 1 GiB per written file, no core
    dumps. At the end every descendant is killed: the pid namespace dies with its first process,
    the cgroup is emptied, the process group is killed.
    """

    name = "local"
    shares_host_fs = True  # run_pytest may put its report outside the repository

    def __init__(self, memory_mb: int = 2048, cpu_seconds: int = 600, max_processes: int = 256,
                 isolation: str | None = None):
        from shared.adapters.confine import confinement

        isolation = isolation or os.environ.get("REPO_PILOT_ISOLATION") or "auto"
        self.memory_mb = memory_mb
        self.cpu_seconds = cpu_seconds
        self.max_processes = max_processes
        self.confinement = confinement(isolation)
        _announce(self.confinement)

    def _preexec(self, nproc: int, group):
        memory = self.memory_mb * 1024 * 1024
        cpu = self.cpu_seconds

        def apply() -> None:  # runs in the child between fork and exec: no logging, no locks
            if group is not None:
                group.join()
            # Data, not address space: V8 (node), Go and the JVM reserve gigabytes of address
            # space they never touch, and die under RLIMIT_AS ("Failed to reserve virtual memory
            # for CodeRange"); RLIMIT_DATA counts the heap and private writable mappings.
            _limit(resource.RLIMIT_DATA, memory)
            _limit(resource.RLIMIT_CPU, cpu)
            _limit(resource.RLIMIT_NPROC, nproc)
            _limit(resource.RLIMIT_FSIZE, 1024**3)
            _limit(resource.RLIMIT_CORE, 0)

        return apply

    def _argv(self, cmd: list[str], cwd: Path, home: str, network: bool, writable: tuple[str, ...],
              host_fs: bool, env: dict | None = None) -> list[str]:
        from shared.adapters.confine import bwrap_argv, mountns_argv, probe_unshare, toolchain_dirs, unshare_argv

        kind = self.confinement.kind
        if kind == "bwrap" and not host_fs:
            return bwrap_argv(cmd, Path(cwd).resolve(), home, network=network, writable=writable,
                              readable=toolchain_dirs(env))
        if kind == "mountns" and not host_fs:
            root = Path(home + ".view")
            root.mkdir()
            return mountns_argv(cmd, Path(cwd).resolve(), home, str(root), network=network, writable=writable,
                                readable=toolchain_dirs(env))
        if kind == "unshare" or (kind in ("bwrap", "mountns") and probe_unshare()):
            return unshare_argv(cmd, network=network)
        return list(cmd)

    async def run(
        self, cmd: list[str], cwd: Path, timeout: float = 300, env: dict | None = None,
        *, network: bool = False, writable: tuple[str, ...] = (), host_fs: bool = False,
    ) -> SandboxResult:
        """Run `cmd` in `cwd` (writable, as are `writable`); on timeout everything it started is
        killed and `timed_out` set. Output is kept up to OUTPUT_KEEP bytes per stream (the tail).
        Cancelled, it kills everything it started too (SIGTERM, SIGKILL after KILL_GRACE) and
        reaps it before the cancellation propagates.

        `host_fs` shows the host filesystem (still a new pid namespace and scrubbed env): for
        installing dependencies, which read local paths the sandbox cannot know in advance."""
        from shared.adapters.confine import ProcessGroup, cgroup_base

        home = tempfile.mkdtemp(prefix="repo-pilot-sandbox-")
        (Path(home) / "tmp").mkdir()
        base = cgroup_base() if self.confinement.cgroup else None
        group = ProcessGroup(base, self.max_processes) if base is not None else None
        nproc = _user_process_count() + self.max_processes
        started = time.monotonic()
        proc, readers, timed_out = None, [], False
        out, err = bytearray(), bytearray()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(cmd, cwd, home, network, tuple(writable), host_fs, env),
                cwd=str(cwd),
                env=scrubbed_env(env, home=home),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own session and process group
                preexec_fn=self._preexec(nproc, group),
            )
            readers = [asyncio.create_task(_drain(proc.stdout, out)), asyncio.create_task(_drain(proc.stderr, err))]
            try:
                # Not wait_for: on 3.11 it can swallow a cancel that lands as the wait completes.
                async with asyncio.timeout(timeout):
                    await proc.wait()
            except TimeoutError:
                timed_out = True
        finally:
            # Every way out (done, timed out, cancelled by a stopping service, failed) ends all the
            # command started, and waits for it: a cancel must not leave a pytest running on.
            await despite_cancel(_end_run(proc, group, readers, home))
        code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        return SandboxResult(
            exit_code=code,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            timed_out=timed_out,
            duration=time.monotonic() - started,
        )


# How long a command still running at the end (timed out, cancelled) has after SIGTERM, to write
# its report or remove its lock files, before SIGKILL.
KILL_GRACE = 2.0


async def _end_run(proc, group, readers: list[asyncio.Task], home: str) -> None:
    """Stop the command's process group (SIGTERM, then SIGKILL after KILL_GRACE when the command
    still runs) and its cgroup, reap the command, collect its output and remove its scratch."""
    try:
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_GRACE):
                    await proc.wait()
    finally:  # even when this cleanup is cancelled itself (asyncio.run's last sweep at exit)
        if proc is not None:
            # Stray background children (a `setsid` daemon too, through the cgroup) must not outlive the run.
            _signal_group(proc.pid, signal.SIGKILL)
    try:
        if group is not None:
            await asyncio.to_thread(group.kill_all)
        if proc is not None:
            await proc.wait()
        if readers:
            _, pending = await asyncio.wait(readers, timeout=5)
            for reader in pending:  # an escaped child still holds the pipes (isolation none, no cgroup)
                reader.cancel()
            await asyncio.wait(readers)
    finally:
        if group is not None:
            await asyncio.to_thread(group.remove)
        shutil.rmtree(home, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(home + ".view")  # the empty mount point of a `mountns` view


OUTPUT_KEEP = 4 * 1024 * 1024


async def _drain(stream, buf: bytearray) -> None:
    while chunk := await stream.read(65536):
        buf.extend(chunk)
        if len(buf) > OUTPUT_KEEP:
            del buf[: len(buf) - OUTPUT_KEEP]


_announced: set = set()


def _announce(confinement) -> None:
    """Say once per process and level what the local sandbox confines and what it does not."""
    if confinement in _announced:
        return
    _announced.add(confinement)
    (log.warning if confinement.not_confined else log.info)("%s", confinement.describe())


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- docker --------------------------------------------------------------------------------------

DEFAULT_IMAGE = "repo-pilot-sandbox:latest"
WORKDIR = "/workspace"


class DockerSandbox:
    """A container per command: no network, memory/CPU/process limits, the repo mounted at /workspace.

    The image must hold Python and pytest (no network inside: nothing can be installed). A host
    path to this interpreter in the command is replaced by `python`.
    """

    name = "docker"
    shares_host_fs = False

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        mem_limit: str = "2g",
        cpus: float = 1.0,
        pids_limit: int = 256,
        client=None,
    ):
        import docker

        self.image = image
        self.mem_limit = mem_limit
        self.nano_cpus = int(cpus * 1e9)
        self.pids_limit = pids_limit
        self.client = client or docker.from_env()

    def _run_sync(self, cmd: list[str], cwd: Path, timeout: float, env: dict | None) -> SandboxResult:
        import requests

        cmd = ["python" if part == sys.executable else part for part in cmd]
        started = time.monotonic()
        container = self.client.containers.run(
            self.image,
            cmd,
            detach=True,
            network_disabled=True,
            mem_limit=self.mem_limit,
            memswap_limit=self.mem_limit,
            nano_cpus=self.nano_cpus,
            pids_limit=self.pids_limit,
            volumes={str(Path(cwd).resolve()): {"bind": WORKDIR, "mode": "rw"}},
            working_dir=WORKDIR,
            # The host's PATH and HOME mean nothing inside the image.
            environment=scrubbed_env(env) | {"HOME": "/tmp", "PATH": "/usr/local/bin:/usr/bin:/bin"},
            # Files written into the mounted repository belong to the host user, not root.
            user=f"{os.getuid()}:{os.getgid()}",
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
        )
        timed_out = False
        try:
            try:
                code = int(container.wait(timeout=timeout).get("StatusCode", -1))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out = True
                container.kill()
                code = -signal.SIGKILL
            out = container.logs(stdout=True, stderr=False).decode(errors="replace")
            err = container.logs(stdout=False, stderr=True).decode(errors="replace")
        finally:
            container.remove(force=True)
        return SandboxResult(code, out, err, timed_out, time.monotonic() - started)

    async def run(
        self, cmd: list[str], cwd: Path, timeout: float = 300, env: dict | None = None,
        *, network: bool = False, writable: tuple[str, ...] = (), host_fs: bool = False,
    ) -> SandboxResult:
        """Run `cmd` in a fresh container with `cwd` mounted as its working directory. Never any
        network and nothing but `cwd` mounted: `network` and `writable` are not honoured."""
        return await asyncio.to_thread(self._run_sync, cmd, cwd, timeout, env)


def docker_available(image: str | None = None) -> bool:
    """True when a Docker engine answers a ping (and holds `image`, when one is named)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        if image:
            client.images.get(image)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable"; the caller logs the choice
        return False


def make_sandbox(prefer: str = "auto", image: str = DEFAULT_IMAGE, isolation: str | None = None) -> Sandbox:
    """`docker` when asked or (for `auto`) when an engine answers and has `image`; else `local`
    (confined at `isolation`, see LocalSandbox)."""
    if prefer not in ("auto", "docker", "local"):
        raise ValueError(f"unknown sandbox kind {prefer!r} (auto, docker, local)")
    if prefer == "local":
        log.info("sandbox: local subprocess (asked for)")
        return LocalSandbox(isolation=isolation)
    if docker_available(image if prefer == "auto" else None):
        log.info("sandbox: docker, image %s", image)
        return DockerSandbox(image)
    if prefer == "docker":
        raise RuntimeError("sandbox: docker was asked for but no Docker engine answers")
    # No engine at all is the ordinary case on a machine without Docker: not worth a warning on
    # every run. An engine that lacks the image is one command away from the stronger sandbox.
    if docker_available():
        log.warning("sandbox: the Docker engine has no image %s (docker build -t %s deploy/sandbox); "
                    "using the local subprocess sandbox", image, image.split(":")[0])
    else:
        log.info("sandbox: no Docker engine answers; using the local subprocess sandbox")
    return LocalSandbox(isolation=isolation)


# -- pytest ----------------------------------------------------------------------------------


# pytest's exit codes (pytest.ExitCode): what each says about a run that wrote no usable report.
PYTEST_EXIT = {2: "interrupted (collection errors?)", 3: "internal error", 4: "usage or configuration error",
               5: "no tests collected"}


async def run_pytest(
    sandbox: Sandbox,
    repo: Path,
    args: list[str] = (),
    timeout: float = 300,
    group: str = "own",
    python: str | None = None,
    plugins: Sequence[str] = (),
    pythonpath: str | None = None,
) -> TestGroupResult:
    """Run pytest in `repo` inside `sandbox` with `python` (default: this interpreter; see
    shared/adapters/target_env.py); counts from its JUnit report.

    The target's pytest, not Repo Pilot's: plugin autoload is off, so only `plugins` (modules the
    target declares, `-p`) and what its own conftest asks for are loaded; its own configuration
    (pytest.ini, pyproject, tox.ini, setup.cfg) and conftest files apply as they would for its
    developers. How the exit code and the report combine is `pytest_result`.
    """
    repo = Path(repo)
    scratch = None
    if getattr(sandbox, "shares_host_fs", True):
        scratch = Path(tempfile.mkdtemp(prefix="repo-pilot-junit-"))
        report, report_arg = scratch / "junit.xml", str(scratch / "junit.xml")
    else:  # only the repository is visible inside: write the report there, relative to cwd
        name = f".repo-pilot-junit-{uuid.uuid4().hex}.xml"
        report, report_arg = repo / name, name
    loaded = [arg for module in plugins for arg in ("-p", module)]
    cmd = [python or sys.executable, "-m", "pytest", f"--junitxml={report_arg}", "-q", "-p", "no:cacheprovider",
           *loaded, *args]
    try:
        with sandbox_span(cmd, attributes={"pilot.sandbox": getattr(sandbox, "name", "")}) as span:
            env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **({"PYTHONPATH": pythonpath} if pythonpath else {})}
            # Inside a confining sandbox only what is named is visible: the report's scratch dir and
            # the project installed for this run.
            visible = tuple(str(p) for p in (scratch, pythonpath) if p)
            result = await sandbox.run(cmd, cwd=repo, timeout=timeout, env=env,
                                       **({"writable": visible} if visible else {}))
            span.set_attribute("process.exit.code", result.exit_code)
        output = redact(tail(result.stdout + ("\n" + result.stderr if result.stderr.strip() else "")))
        if result.timed_out:
            return TestGroupResult(group=group, errors=1, timed_out=timeout,
                                   output=f"timed out after {timeout:g}s\n{output}")
        try:
            totals, problem = read_junit(report), None
        except JUnitError as exc:
            totals, problem = None, str(exc)
        return pytest_result(group, result.exit_code, totals, problem, output)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            report.unlink(missing_ok=True)


def pytest_result(
    group: str, exit_code: int, totals: JUnitTotals | None, problem: str | None, output: str
) -> TestGroupResult:
    """One pytest run's result (pure). Never "0 of 0 passed" for a suite that did not run:

    - no tests collected (exit 5, nothing in the report): zeros, and the output says so;
    - collection errors, an internal error, a usage/config error (exit 2-4), or exit 1 with no
      failing test in the report, or no report at all: at least one error, the reason first in
      `output` (the tail of pytest's own output follows).
    """
    if totals is None:
        if exit_code == 5:
            return TestGroupResult(group=group, output=f"no tests collected\n{output}")
        why = PYTEST_EXIT.get(exit_code, f"exit {exit_code}")
        return TestGroupResult(group=group, errors=1,
                               output=f"could not run: pytest {why}, {problem} (exit {exit_code})\n{output}")
    errors, note = totals.errors, ""
    if exit_code in (2, 3, 4) or (exit_code == 1 and not totals.failed and not totals.errors):
        errors = max(errors, 1)
        note = f"pytest exit {exit_code}: {PYTEST_EXIT.get(exit_code, 'failed outside any test')}\n"
    if exit_code == 5 and not totals.total:
        note = "no tests collected\n"
    failing = "".join(f"\nFAILED {name}" for name in totals.failing[:50])
    return TestGroupResult(
        group=group,
        total=totals.total + errors - totals.errors,
        passed=totals.passed,
        failed=totals.failed,
        errors=errors,
        skipped=totals.skipped,
        output=tail(note + output + failing),
    )
