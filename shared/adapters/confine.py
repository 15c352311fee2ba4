"""What the local sandbox can confine on this machine, and the wrappers that do it.

Three levels, the strongest the kernel allows (probed once per process, `confinement()`):

- `bwrap` (bubblewrap): new network, pid, ipc, uts and mount namespaces; the filesystem is the
  read-only system directories and interpreter prefixes, the working copy (read-write), a fresh
  HOME and /tmp, a fresh /proc (the parent's `/proc/<pid>/environ` does not exist in there).
- `mountns`: the same view as `bwrap`, built by fsview.py inside `unshare --mount` (root, or a
  user namespace), for machines without bubblewrap; every capability is dropped before the exec.
- `unshare` (util-linux): new network, pid (fresh /proc), ipc and uts namespaces; the host
  filesystem stays visible with the user's own permissions.
- `none`: a new session with resource limits only; network, filesystem and /proc are the host's.

Independently, a `pids` cgroup (v1 `pids` hierarchy, or v2 where the controller is delegated)
bounds the number of processes (RLIMIT_NPROC does not bind root) and lists every descendant, so
the sandbox can kill them all at the end, including ones that called `setsid`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

LEVELS = ("auto", "bwrap", "mountns", "unshare", "none")
SYSTEM_RO = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")


@dataclass(frozen=True)
class Confinement:
    kind: str  # "bwrap" | "mountns" | "unshare" | "none"
    cgroup: bool  # a pids cgroup can be made per run
    not_confined: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        confined = {"bwrap": "network, pids, filesystem view, /proc",
                    "mountns": "network, pids, filesystem view, /proc, no capabilities",
                    "unshare": "network, pids, /proc", "none": "resource limits only"}[self.kind]
        text = f"local sandbox: {self.kind} ({confined}; process count {'bounded by a cgroup' if self.cgroup else 'by RLIMIT_NPROC only'})"
        return text + (f"; NOT confined: {', '.join(self.not_confined)}" if self.not_confined else "")


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def probe_bwrap() -> bool:
    exe = shutil.which("bwrap")
    return bool(exe) and _works([exe, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
                                 "--unshare-all", "--die-with-parent", "true"])


@functools.cache
def probe_unshare() -> bool:
    exe = shutil.which("unshare")
    return bool(exe) and _works([exe, "--net", "--pid", "--ipc", "--uts", "--fork", "--mount-proc",
                                 "--kill-child", "true"])


@functools.cache
def probe_mountns() -> bool:
    """fsview.py can build the view here (unshare may make a mount namespace and mount in it)."""
    if not shutil.which("unshare"):
        return False
    with tempfile.TemporaryDirectory(prefix="repo-pilot-probe-") as tmp:
        home, root = Path(tmp, "home"), Path(tmp, "root")
        home.mkdir()
        root.mkdir()
        true = shutil.which("true") or "/bin/true"
        return _works(mountns_argv([true], home, str(home), str(root), network=False))


@functools.cache
def cgroup_base() -> Path | None:
    """A pids cgroup directory under which this process may create children, or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            base = Path("/sys/fs/cgroup/pids") / path.lstrip("/")
        elif controllers == "":
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            try:
                if "pids" not in (base / "cgroup.subtree_control").read_text().split():
                    continue
            except OSError:
                continue
        else:
            continue
        probe = base / f"repo-pilot-probe-{uuid.uuid4().hex[:8]}"
        try:
            probe.mkdir()
            probe.rmdir()
            return base
        except OSError:
            continue
    return None


def confinement(kind: str = "auto") -> Confinement:
    """The level to use: `auto` picks the strongest that works; a named one must work."""
    if kind not in LEVELS:
        raise ValueError(f"unknown isolation {kind!r} ({', '.join(LEVELS)})")
    if kind == "auto":
        kind = ("bwrap" if probe_bwrap() else "mountns" if probe_mountns()
                else "unshare" if probe_unshare() else "none")
    elif kind == "bwrap" and not probe_bwrap():
        raise RuntimeError("isolation bwrap was asked for but bubblewrap is missing or not allowed here")
    elif kind == "mountns" and not probe_mountns():
        raise RuntimeError("isolation mountns was asked for but no mount namespace can be made here "
                           "(needs root, or user namespaces)")
    elif kind == "unshare" and not probe_unshare():
        raise RuntimeError("isolation unshare was asked for but unshare cannot create namespaces here")
    cgroup = cgroup_base() is not None
    missing = {"bwrap": (), "mountns": (), "unshare": ("filesystem (the host's, with the user's permissions)",),
               "none": ("network", "filesystem", "other processes' /proc (environ of the parent)")}[kind]
    if not cgroup and kind == "none":
        missing = (*missing, "descendants that call setsid (killed only with the process group)")
    if not cgroup and os.geteuid() == 0:
        missing = (*missing, "process count (RLIMIT_NPROC does not bind root)")
    return Confinement(kind, cgroup, tuple(missing))


# -- wrappers -------------------------------------------------------------------------------------


def interpreter_paths() -> list[str]:
    """Where this interpreter and its packages live (read-only inside the sandbox)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(sys.executable).resolve().parent.parent)}
    return sorted(p for p in paths if p and os.path.isdir(p))


TOOLCHAIN_VARS = ("CARGO_HOME", "RUSTUP_HOME", "GOROOT", "GOPATH", "GOMODCACHE")


def toolchain_dirs(env: dict | None) -> tuple[str, ...]:
    """Toolchain homes a run names in its environment (rustup's toolchains, cargo's registry, Go's
    module cache), shown read-only: the sandbox's fresh HOME has none of them."""
    return tuple(v for k in TOOLCHAIN_VARS if (v := (env or {}).get(k)) and os.path.isdir(v))


def _git_dirs(cwd: Path) -> list[tuple[str, bool]]:
    """A worktree's `.git` file points into a mirror: its own dir read-write, the shared one read-only."""
    dot = cwd / ".git"
    if not dot.is_file():
        return []
    try:
        gitdir = Path(dot.read_text().split("gitdir:", 1)[1].strip())
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
    except (OSError, IndexError):
        return []
    return [(str(common), False), (str(gitdir.resolve()), True)]


def view(cmd: list[str], cwd: Path, home: str, *, writable: tuple[str, ...] = (),
         readable: tuple[str, ...] = ()) -> tuple[list[list[str]], list[str]]:
    """The filesystem view described in the module docstring, as bubblewrap-style operations
    (`ro-bind`, `bind`, `symlink`, `tmpfs`, `proc`, `dev`, in order), and `cmd` with its
    executable resolved to an absolute path when it lies outside the system paths."""
    ops: list[list[str]] = []
    for path in SYSTEM_RO:
        if os.path.exists(path):
            ops.append(["ro-bind", path, path] if not os.path.islink(path) else ["symlink", os.readlink(path), path])
    ops += [["proc", "/proc"], ["dev", "/dev"], ["tmpfs", "/tmp"], ["tmpfs", "/run"]]
    exe = Path(cmd[0])
    if not exe.is_absolute() and (found := shutil.which(cmd[0])):
        exe = Path(found)  # a toolchain outside the system paths (~/.cargo/bin, /usr/local/bin…)
        cmd = [str(exe), *cmd[1:]]
    extra_ro = [*interpreter_paths(), *readable]
    if exe.is_absolute() and exe.parent.name == "bin" and not _system(exe.parent.parent):
        extra_ro.append(str(exe.parent.parent))  # a target's own virtualenv, or a toolchain's root
    ops += [["ro-bind", path, path] for path in extra_ro if os.path.exists(path) and not _system(Path(path))]
    ops += [["bind" if rw else "ro-bind", path, path] for path, rw in _git_dirs(cwd)]
    ops += [["bind", path, path] for path in (*writable, str(cwd), home) if os.path.exists(path)]
    # Git metadata is read-only inside: tests may read it (setuptools-scm, `git describe`), never
    # plant configuration that host-side git would run, nor rewrite objects (docs/security.md).
    dot_git = Path(cwd) / ".git"
    if dot_git.is_dir() and not dot_git.is_symlink():
        ops.append(["ro-bind", str(dot_git), str(dot_git)])
    return ops, cmd


def _system(path: Path) -> bool:
    """`path` is the root or lies in a system path the view already shows (`/bin/sh` must not
    bring in `/`, nor `/usr/bin/node` a second `/usr`)."""
    return path == Path("/") or any(path == Path(p) or Path(p) in path.parents for p in SYSTEM_RO)


def bwrap_argv(cmd: list[str], cwd: Path, home: str, *, network: bool,
               writable: tuple[str, ...] = (), readable: tuple[str, ...] = ()) -> list[str]:
    """`cmd` under bubblewrap, in the view of `view()`."""
    argv = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session", "--unshare-all"]
    if network:
        argv.append("--share-net")
    ops, cmd = view(cmd, cwd, home, writable=writable, readable=readable)
    for op, *args in ops:
        argv += [f"--{op}", *args]
    return [*argv, "--chdir", str(cwd), "--", *cmd]


def mountns_argv(cmd: list[str], cwd: Path, home: str, root: str, *, network: bool,
                 writable: tuple[str, ...] = (), readable: tuple[str, ...] = ()) -> list[str]:
    """`cmd` in new namespaces (mount, pid, ipc, uts, and network unless asked) where fsview.py
    builds the view of `view()` on a tmpfs mounted at `root` (an empty directory), pivots into it
    and drops every capability before the exec: bubblewrap's view without bubblewrap."""
    ops, cmd = view(cmd, cwd, home, writable=writable, readable=readable)
    plan = json.dumps({"root": root, "ops": ops, "cwd": str(cwd), "cmd": cmd})
    argv = [shutil.which("unshare") or "unshare", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        argv.insert(1, "--map-root-user")  # mounts need CAP_SYS_ADMIN: a user namespace gives it
    if not network:
        argv.insert(1, "--net")
    return [*argv, "--", sys.executable, "-I", "-S", FSVIEW, plan]


FSVIEW = str(Path(__file__).with_name("fsview.py"))


def unshare_argv(cmd: list[str], *, network: bool) -> list[str]:
    argv = [shutil.which("unshare") or "unshare", "--pid", "--ipc", "--uts", "--fork", "--mount-proc", "--kill-child"]
    if not network:
        argv.insert(1, "--net")
    return [*argv, "--", *cmd]


# -- the process cgroup ------------------------------------------------------------------------------


class ProcessGroup:
    """A pids cgroup for one sandbox run: bounds the process count, and kills every member at the end."""

    def __init__(self, base: Path, max_processes: int):
        self.path = base / f"repo-pilot-{uuid.uuid4().hex}"
        self.path.mkdir()
        (self.path / "pids.max").write_text(str(max_processes))
        self.procs = str(self.path / "cgroup.procs")

    def join(self) -> None:
        """Put the calling process in the group (runs in the child between fork and exec)."""
        fd = os.open(self.procs, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def members(self) -> list[int]:
        try:
            return [int(p) for p in Path(self.procs).read_text().split()]
        except OSError:
            return []

    def kill_all(self, wait: float = 5.0) -> int:
        """SIGKILL every member until none is left; returns how many were killed."""
        killed: set[int] = set()
        deadline = time.monotonic() + wait
        while (members := self.members()) and time.monotonic() < deadline:
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        return len(killed)

    def remove(self) -> None:
        self.kill_all()
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # members still exiting
                time.sleep(0.02)
        log.warning("sandbox cgroup %s could not be removed", self.path)
