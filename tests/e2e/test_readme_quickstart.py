"""The README's quick start, as a newcomer runs it: a fresh clone in a directory whose path has a
space, the commands of the fenced block under "Set up and run" taken from README.md itself, on a
repository whose path has a space too, with nothing configured (embedded servers).

To stay fast the clone reuses this checkout's virtualenv instead of building its own: `.venv` in
the clone is a symlink to it and make is told (`-o .venv/.installed`) not to reinstall, so the
`repo-pilot` that runs is this checkout's. `make test` from the block is left out (it is this
suite)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_git_repo

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def quick_start_commands(readme: str) -> list[str]:
    """The commands of the first fenced block under the "Set up and run" heading (comments cut)."""
    section = re.search(r"^## Set up and run.*?^```\w*\n(.*?)^```", readme, re.S | re.M)
    assert section, "README.md has no fenced block under 'Set up and run'"
    return [line.split("#", 1)[0].strip() for line in section.group(1).splitlines() if line.split("#", 1)[0].strip()]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_readme_quick_start_from_a_fresh_clone_with_spaces_in_paths(tmp_path):
    clone = tmp_path / "DIR with space" / "repo-pilot"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(Path(sys.executable).parents[1], target_is_directory=True)
    target = make_git_repo(tmp_path / "my repo", {
        "calc/__init__.py": '"""Small arithmetic."""\n',
        "calc/ops.py": "def add(a, b):\n    return a + b\n",
        "tests/test_ops.py": "from calc.ops import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        "pyproject.toml": '[project]\nname = "calc"\nversion = "0.1.0"\n',
    })
    commands = quick_start_commands((clone / "README.md").read_text(encoding="utf-8"))
    (run,) = [c for c in commands if c.startswith("make run ")]
    assert [c for c in commands if c != run] == ["make test"]  # the only other one: this suite
    argv = shlex.split(run)
    argv = ["make", "-o", ".venv/.installed", *[f'REPO={target}' if a.startswith("REPO=") else a for a in argv[1:]]]

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "REPO_PILOT_")) and k not in ("NATS_URL", "DATABASE_URL")}
    env.update(REPO_PILOT_HOME=str(home), REPO_PILOT_TOOLS_HOME=os.environ["REPO_PILOT_TOOLS_HOME"])
    try:
        proc = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "run log:" in proc.stdout and "score" in proc.stdout
        assert ". .venv/bin/activate" in proc.stderr  # how to reach the other commands
        assert "repo-pilot servers stop" in proc.stderr  # what keeps running, and how to stop it
        branches = subprocess.run(["git", "-C", str(target), "branch", "--list", "repo-pilot/*"],
                                  capture_output=True, text=True, check=True).stdout
        assert branches.strip().startswith("repo-pilot/")  # the run's branch in the repository with a space
    finally:
        subprocess.run([str(clone / ".venv" / "bin" / "repo-pilot"), "servers", "stop"], cwd=clone, env=env,
                       capture_output=True, timeout=120)
