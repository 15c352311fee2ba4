"""Scanning a large repository: the analyzer's reading of a working copy (`facts.collect`, which
lists and reads the files and parses none, and `scan_repo`, the budgeted read a model gets) against
the floor of `git ls-files` plus reading every listed file once. Each side runs in a child process
so its peak memory (ru_maxrss from wait4) is its own.

Three times for each side: the whole child (interpreter start-up, imports, then the read twice),
the first read timed inside the child (after its imports; ours loads the secrets redactor for its
first git command), and the second read in the same child — what a running analyzer pays per scan.
The floor imports nearly nothing, so the child figure charges ours its package's start-up.

Also, beside the same floor: the rules engine's whole analysis (`collect` + `analyze_facts`, which
needs every module parsed), and that analysis a second time in the same process (what the implement
and docs steps pay: unchanged sources are not parsed again).

The repository: a copy of this interpreter's standard library (no site-packages, no caches), a
7 MB generated Python file and a 60 MB binary, committed once. Built in a temp dir, then removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from benchmarks.budget_bench import write_big_files
from benchmarks.servers import installed_python

OURS = (
    "import sys, time; from pathlib import Path\n"
    "from shared.engines.rules import facts\n"
    "from shared.engines.scan import scan_repo\n"
    "r = Path(sys.argv[1])\n"
    "for _ in range(2):\n"
    "    t = time.perf_counter(); facts.collect(r); scan_repo(r); print(time.perf_counter() - t)\n"
)
RULES = (
    "import sys, time; from pathlib import Path\n"
    "from shared.engines.rules import facts\n"
    "from shared.engines.rules.analyze import analyze_facts\n"
    "r = Path(sys.argv[1]); analyze_facts(facts.collect(r))\n"
    "t = time.perf_counter(); analyze_facts(facts.collect(r)); print(time.perf_counter() - t)\n"
)
FLOOR = (
    "import subprocess, sys, time; from pathlib import Path\n"
    "r = Path(sys.argv[1])\n"
    "for _ in range(2):\n"
    "    t = time.perf_counter()\n"
    "    names = subprocess.run(['git', '-C', str(r), 'ls-files', '-z'], capture_output=True, check=True).stdout\n"
    "    n = 0\n"
    "    for name in filter(None, names.split(b'\\0')):\n"
    "        n += len((r / name.decode()).read_bytes())\n"
    "    print(time.perf_counter() - t)\n"
)
# Imports only: an installation has its bytecode written before it is timed (`installed_python`).
WARM = "import shared.engines.rules.facts, shared.engines.scan, shared.engines.rules.analyze"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@example.com", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def build_repo(root: Path) -> tuple[int, int]:
    """The large repository at `root`; returns (files, bytes) as git lists them."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib, root / "stdlib", symlinks=True,
                    ignore=shutil.ignore_patterns("site-packages", "dist-packages", "__pycache__", "*.pyc"))
    write_big_files(root)
    env = {**os.environ, **GIT_ENV}
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "large"]):
        subprocess.run(["git", "-C", str(root), *cmd], check=True, env=env, capture_output=True)
    names = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True).stdout
    files = [root / n.decode() for n in names.split(b"\0") if n]
    return len(files), sum(f.lstat().st_size for f in files)


def measure(script: str, repo: Path, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds, peak MB, stdout) of one child running `script` on `repo`."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", script, str(repo)], cwd=Path(__file__).parent.parent,
                            stdout=subprocess.PIPE, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"scan benchmark child exited {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024, out


def scan_benchmark(tmp: Path) -> dict:
    repo = tmp / "large-repo"
    repo.mkdir()
    try:
        files, size = build_repo(repo)
        env = installed_python(dict(os.environ), tmp / "pycache")
        measure(FLOOR, repo, env)  # warm the page cache for both sides
        subprocess.run([sys.executable, "-c", WARM], cwd=Path(__file__).parent.parent, env=env, check=True)
        ours_s, ours_mb, ours_in = measure(OURS, repo, env)
        floor_s, floor_mb, floor_in = measure(FLOOR, repo, env)
        (ours_first, ours_again), (floor_first, floor_again) = (
            [float(x) for x in out.split()[-2:]] for out in (ours_in, floor_in))
        rules_s, rules_mb, again = measure(RULES, repo, env)
        again_s = float(again.strip().splitlines()[-1])
        ours_s, floor_s = ours_s - ours_again, floor_s - floor_again  # one read each, as a one-shot process
        return {"files": files, "bytes": size, "ours_s": ours_s, "ours_mb": ours_mb,
                "floor_s": floor_s, "floor_mb": floor_mb, "ours_first_s": ours_first, "ours_again_s": ours_again,
                "floor_first_s": floor_first, "floor_again_s": floor_again, "rules_s": rules_s - again_s, "rules_mb": rules_mb,
                "rules_again_s": again_s}
    finally:
        shutil.rmtree(repo, ignore_errors=True)
