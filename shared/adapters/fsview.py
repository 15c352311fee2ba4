"""The sandbox's filesystem view without bubblewrap: run as a script inside `unshare --mount …`.

`python -I fsview.py PLAN_JSON` builds, in the new mount namespace, the same view `bwrap_argv`
describes (confine.py): a tmpfs root holding read-only binds of the system and interpreter paths,
read-write binds of the working copy and the sandbox's HOME, a fresh `/tmp`, `/run`, `/proc` and a
minimal `/dev`; then `pivot_root`s into it, detaches the host's tree, drops every capability
(the bounding set and no_new_privs, so even uid 0 gets none back at exec) and runs the command
as its child, staying the namespace's init.

Standard library only, no import of the project: it runs before the command, as the sandbox's
first process, with the interpreter that started Repo Pilot.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {source} on {target}")


def _mount_point(path: str, like: str) -> None:
    """An empty directory or file at `path` to mount `like` on (kept when it is already there)."""
    if os.path.lexists(path):
        return
    if os.path.isdir(like):
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()  # noqa: SIM115


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _remount_read_only(target: str) -> None:
    """The bind at `target` and every mount below it read-only (a bind's flags are per mount)."""
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4].encode().decode("unicode_escape") for line in info]
    for point in sorted(p for p in points if p == target or p.startswith(target.rstrip("/") + "/")):
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        except OSError:
            # a mount that refuses a remount keeps its flags (e.g. locked ones in a user namespace)
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def build(root: str, ops: list[list[str]]) -> None:
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the host
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for op, *args in ops:
        if op in ("ro-bind", "bind"):
            source, dest = args
            target = _under(root, dest)
            _mount_point(target, source)
            mount(source, target, None, MS_BIND | MS_REC)
            if op == "ro-bind":
                _remount_read_only(target)
        elif op == "symlink":
            link_target, dest = args
            os.makedirs(os.path.dirname(_under(root, dest)), exist_ok=True)
            os.symlink(link_target, _under(root, dest))
        elif op == "tmpfs":
            target = _under(root, args[0])
            os.makedirs(target, exist_ok=True)
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        elif op == "proc":
            target = _under(root, args[0])
            os.makedirs(target, exist_ok=True)
            mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif op == "dev":
            target = _under(root, args[0])
            os.makedirs(target, exist_ok=True)
            mount("tmpfs", target, "tmpfs", MS_NOSUID, "mode=0755")
            for name in DEVICES:
                if os.path.exists(f"/dev/{name}"):
                    open(os.path.join(target, name), "a").close()  # noqa: SIM115
                    mount(f"/dev/{name}", os.path.join(target, name), None, MS_BIND)
            for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                               ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
                os.symlink(link, os.path.join(target, name))
            os.makedirs(os.path.join(target, "shm"))
            mount("tmpfs", os.path.join(target, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        else:
            raise ValueError(f"unknown view operation {op!r}")


def enter(root: str) -> None:
    """Make `root` the filesystem root and detach the host's tree from this namespace."""
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(f"pivot_root: unknown syscall number on {os.uname().machine}")
    os.chdir(root)
    _check(libc.syscall(number, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "detach the host's root")
    os.chdir("/")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_privileges() -> None:
    """No capability now (so the command may read this init's /proc entries, as its peer) and none
    after any exec (an empty bounding set; uid 0 gets its permitted set from it)."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    _check(libc.capset(ctypes.byref(header), ctypes.byref((_CapData * 2)())), "drop capabilities")


def main(argv: list[str]) -> int:
    plan = json.loads(argv[1])
    try:
        build(plan["root"], plan["ops"])
        enter(plan["root"])
        drop_privileges()
        os.chdir(plan["cwd"])
    except OSError as exc:
        print(f"repo-pilot sandbox: could not build the filesystem view: {exc}", file=sys.stderr)
        return 125
    return init(plan["cmd"])


def init(cmd: list[str]) -> int:
    """Stay as the namespace's pid 1, as bubblewrap's init does: run `cmd` as a child, pass it the
    signals we get, reap every orphan, and exit with the command's status (the kernel then kills
    whatever is left in the namespace)."""
    child = os.fork()
    if child == 0:
        try:
            os.execv(cmd[0], cmd) if os.path.isabs(cmd[0]) else os.execvp(cmd[0], cmd)
        except OSError as exc:
            print(f"repo-pilot sandbox: cannot run {cmd[0]}: {exc}", file=sys.stderr)
        os._exit(127)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda number, _frame: os.kill(child, number))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        if pid == child:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
