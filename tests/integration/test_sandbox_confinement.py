"""What the local sandbox confines, per isolation level, over real processes (issue 12).

Each level runs where this machine allows it (bubblewrap and unshare need namespaces; the
cgroup needs a writable pids hierarchy); elsewhere the case is skipped with the reason, and
docs/security.md says what each level guarantees.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from shared.adapters import confine
from shared.adapters.confine import cgroup_base, confinement, probe_bwrap, probe_mountns, probe_unshare
from shared.adapters.sandbox import LocalSandbox, scrubbed_env

pytestmark = pytest.mark.integration

LEVELS = [
    pytest.param("bwrap", marks=pytest.mark.skipif(not probe_bwrap(), reason="bubblewrap missing or not allowed")),
    pytest.param("mountns", marks=pytest.mark.skipif(not probe_mountns(), reason="no mount namespace here")),
    pytest.param("unshare", marks=pytest.mark.skipif(not probe_unshare(), reason="no namespaces for unshare")),
    "none",
]
NAMESPACED = LEVELS[:3]
VIEWS = LEVELS[:2]  # the levels that show a filesystem view instead of the host's


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def listener():
    """A TCP server on loopback, as the bus would be."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


@pytest.mark.parametrize("level", NAMESPACED)
async def test_no_network_unless_asked(level, listener, tmp_path):
    code = f"import socket; socket.create_connection(('127.0.0.1', {listener}), timeout=3); print('CONNECTED')"
    denied = await LocalSandbox(isolation=level).run(py(code), cwd=tmp_path, timeout=60)
    assert denied.exit_code != 0 and "CONNECTED" not in denied.stdout, denied.stderr
    assert "Error" in denied.stderr  # the attempt is visible
    if level != "bwrap":  # bwrap's --share-net keeps the host's loopback too
        allowed = await LocalSandbox(isolation=level).run(py(code), cwd=tmp_path, timeout=60, network=True)
        assert "CONNECTED" in allowed.stdout, allowed.stderr


@pytest.mark.parametrize("level", NAMESPACED)
async def test_the_parents_environ_is_out_of_reach(level, tmp_path, monkeypatch):
    code = ("import os, pathlib\n"
            "for p in pathlib.Path('/proc').iterdir():\n"
            "    if p.name.isdigit():\n"
            "        try: print(p.joinpath('environ').read_bytes().decode(errors='replace'))\n"
            "        except OSError: pass\n"
            f"print('PARENT', os.path.exists('/proc/{os.getpid()}/environ') and {os.getpid()} > 3)")
    result = await LocalSandbox(isolation=level).run(py(code), cwd=tmp_path, timeout=60)
    assert result.exit_code == 0, result.stderr
    own = Path(f"/proc/{os.getpid()}/environ").read_bytes().decode(errors="replace").split("\0")
    kept = scrubbed_env(home="/x")
    private = [e for e in own if "=" in e and e.split("=", 1)[0] not in kept and len(e) > 8]
    assert private and not [e for e in private if e in result.stdout]  # none of this process's own
    assert "PARENT False" in result.stdout


@pytest.mark.parametrize("level", VIEWS)
async def test_the_view_shows_only_the_working_copy_a_temp_dir_and_system_paths(level, tmp_path):
    home = tmp_path / "user-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("FAKE KEY")
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    code = ("import pathlib, sys\n"
            f"for p in ['{home}/.ssh/id_rsa', '{outside}', '/root/.ssh', '/home']:\n"
            "    print(p, pathlib.Path(p).exists())\n"
            f"try:\n    pathlib.Path('{outside}/x').write_text('x'); print('WROTE OUTSIDE')\n"
            "except OSError as e: print('refused', e)\n"
            "try:\n    pathlib.Path('/usr/pwned').write_text('x'); print('WROTE USR')\n"
            "except OSError as e: print('refused', e)\n"
            "pathlib.Path('inside.txt').write_text('ok'); print('wrote inside')\n")
    result = await LocalSandbox(isolation=level).run(py(code), cwd=work, timeout=60)
    assert result.exit_code == 0, result.stderr
    assert f"{home}/.ssh/id_rsa False" in result.stdout and f"{outside} False" in result.stdout
    assert "WROTE" not in result.stdout and result.stdout.count("refused") == 2
    assert (work / "inside.txt").read_text() == "ok" and list(outside.iterdir()) == []
    assert not Path("/usr/pwned").exists()


@pytest.mark.parametrize("level", VIEWS)
async def test_root_inside_a_view_holds_no_capability_and_cannot_remount(level, tmp_path):
    code = ("import pathlib, subprocess\n"
            "caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapBnd'))]\n"
            "print('CAPS', *caps)\n"
            "r = subprocess.run(['mount', '-o', 'remount,rw', '/usr'], capture_output=True, text=True)\n"
            "print('REMOUNT', r.returncode)\n")
    result = await LocalSandbox(isolation=level).run(py(code), cwd=tmp_path, timeout=60)
    assert "CAPS 0000000000000000 0000000000000000" in result.stdout, (result.stdout, result.stderr)
    assert "REMOUNT 0" not in result.stdout and "REMOUNT" in result.stdout


NOBODY = 65534


def _as_nobody_possible() -> bool:
    return (os.geteuid() == 0 and bool(shutil.which("setpriv")) and os.path.exists("/usr/bin/python3")
            and subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                                "unshare", "--user", "--map-root-user", "--mount", "true"],
                               capture_output=True).returncode == 0)


@pytest.mark.skipif(not _as_nobody_possible(), reason="needs root to become an unprivileged user, and user namespaces")
def test_mountns_builds_the_view_for_an_unprivileged_user_too():
    """The same plan as an ordinary user: `unshare --map-root-user` gives the mounts their right."""

    base = Path(tempfile.mkdtemp(prefix="repo-pilot-nobody-"))  # pytest's tmp_path is root's alone
    try:
        _as_nobody(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _as_nobody(base: Path) -> None:
    for name in ("work", "home", "root", "outside"):
        (base / name).mkdir(parents=True)
    (base / "outside" / "secret").write_text("the user's file")
    base.chmod(0o755)
    for name in ("work", "home", "root"):
        os.chown(base / name, NOBODY, NOBODY)
    script = ("import sys, subprocess\n"
              f"sys.path.insert(0, {str(Path(confine.__file__).parents[2])!r})\n"
              "from pathlib import Path\n"
              "from shared.adapters.confine import mountns_argv\n"
              f"argv = mountns_argv(['/bin/sh', '-c', 'cat {base}/outside/secret; echo ok > inside; "
              f"grep CapEff /proc/self/status'], Path({str(base / 'work')!r}), {str(base / 'home')!r}, "
              f"{str(base / 'root')!r}, network=False)\n"
              "assert argv[1:3] == ['--net', '--map-root-user'], argv\n"
              "r = subprocess.run(argv, capture_output=True, text=True)\n"
              "print(r.returncode, r.stdout, r.stderr)\n")
    proc = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           "/usr/bin/python3", "-I", "-c", script], capture_output=True, text=True, cwd="/", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("0 ") and "CapEff:\t0000000000000000" in proc.stdout, proc.stdout
    assert "the user's file" not in proc.stdout and "No such file" in proc.stdout
    assert (base / "work" / "inside").read_text() == "ok\n"


def test_an_unknown_or_unavailable_level_is_refused_by_name():
    with pytest.raises(ValueError, match="mountns"):
        confinement("chroot")


def _alive(token: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = entry.joinpath("cmdline").read_bytes()
                state = entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if token.encode() in cmdline and state not in ("Z", "X"):
                pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("level", LEVELS)
async def test_a_setsid_child_does_not_outlive_the_run(level, tmp_path):
    conf = confinement(level)
    if level == "none" and not conf.cgroup:
        pytest.skip("without namespaces or a cgroup a setsid child escapes (documented)")
    token = str(uuid.uuid4().int % 10**7 + 10**7)
    code = ("import subprocess\n"
            f"subprocess.Popen(['sleep', '{token}'], start_new_session=True, stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)\nprint('started')")
    result = await LocalSandbox(isolation=level).run(py(code), cwd=tmp_path, timeout=60)
    assert "started" in result.stdout, result.stderr
    for _ in range(100):
        if not _alive(f"sleep\0{token}"):
            break
        await asyncio.sleep(0.05)
    assert _alive(f"sleep\0{token}") == []


@pytest.mark.parametrize("level", LEVELS)
async def test_the_process_limit_holds_even_for_root(level, tmp_path):
    if cgroup_base() is None:
        pytest.skip("no writable pids cgroup here: the limit is RLIMIT_NPROC, which root ignores")
    code = ("import subprocess\nprocs = []\n"
            "try:\n"
            "    for _ in range(60):\n"
            "        procs.append(subprocess.Popen(['sleep', '30']))\n"
            "    print('SPAWNED', len(procs))\n"
            "except OSError as e:\n"
            "    print('LIMITED after', len(procs), e)\n")
    result = await LocalSandbox(isolation=level, max_processes=20).run(py(code), cwd=tmp_path, timeout=60)
    assert "LIMITED after" in result.stdout, (result.stdout, result.stderr)
    assert int(result.stdout.split("LIMITED after")[1].split()[0]) < 20


def test_what_is_not_confined_is_said(caplog):
    conf = confinement("none")
    assert "network" in conf.not_confined and "filesystem" in conf.not_confined
    assert "NOT confined: network" in conf.describe()
