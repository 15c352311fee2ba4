"""The git door against planted configuration (issue 17): a working copy whose `.git` was written
by code under test runs nothing on the host, whatever the plant.

Each case plants one kind of command-running configuration in a real workspace working copy (as a
hostile test suite at a sandbox level without a filesystem view could), then drives the host-side
git operations the pipeline runs there (status, ls-files, add, diff, commit, format-patch,
checkout, am): the planted program never runs, and the copy's configuration is back to what a
clone writes.
"""

from __future__ import annotations

import os
import subprocess
import zlib
from pathlib import Path

import pytest

from shared.adapters.git import GitTampered, git, git_patch, sanitise_repository
from shared.adapters.workspace import Workspace, commit_all, format_patch
from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration

EVIL = """#!/bin/sh
echo "$0 $*" >> {markers}/ran-$$
cat >/dev/null 2>&1 || true
"""

PLANTS = {
    "fsmonitor": "[core]\n\tfsmonitor = {script}\n",
    "pager": "[core]\n\tpager = {script}\n",
    "editor": "[core]\n\teditor = {script}\n[sequence]\n\teditor = {script}\n",
    "ssh": "[core]\n\tsshCommand = {script}\n",
    "askpass": "[core]\n\taskPass = {script}\n[credential]\n\thelper = !{script}\n",
    "hooks-path": "[core]\n\thooksPath = {hooks}\n",
    "diff-external": "[diff]\n\texternal = {script}\n",
    "diff-driver": "[diff \"pwn\"]\n\ttextconv = {script}\n\tcommand = {script}\n",
    "filter": "[filter \"pwn\"]\n\tclean = {script}\n\tsmudge = {script}\n\tprocess = {script}\n\trequired\n",
    "merge-driver": "[merge \"pwn\"]\n\tdriver = {script} %O %A %B\n",
    "gpg": "[gpg]\n\tprogram = {script}\n[commit]\n\tgpgSign = true\n",
    "include": "[include]\n\tpath = {included}\n",
    "include-if": "[includeIf \"gitdir:/\"]\n\tpath = {included}\n",
    "upload-pack-hook": "[uploadpack]\n\tpackObjectsHook = {script}\n",
    "proxy": "[core]\n\tgitProxy = {script}\n",
    "alternate-refs": "[core]\n\talternateRefsCommand = {script}\n",
    "worktree-config": "[extensions]\n\tworktreeConfig = true\n",
}


@pytest.fixture
def copy(tmp_path):
    """A run's working copy built by the real workspace, plus a planted script and its marker dir."""
    user = make_git_repo(tmp_path / "user", {"pkg/__init__.py": "VALUE = 1\n", "README.md": "hello\n",
                                             ".gitattributes": "*.py filter=pwn diff=pwn merge=pwn\n"})
    ws = Workspace(tmp_path / "home")
    base = git(user, "rev-parse", "HEAD")
    path = ws._worktree("run-door", str(user), base, [], "repo-pilot/run-door")
    markers = tmp_path / "markers"
    markers.mkdir()
    script = tmp_path / "evil.sh"
    script.write_text(EVIL.format(markers=markers))
    script.chmod(0o755)
    hooks = path / "hooks"
    hooks.mkdir()
    for name in ("pre-commit", "post-checkout", "post-commit", "applypatch-msg", "pre-applypatch"):
        (hooks / name).write_text(script.read_text())
        (hooks / name).chmod(0o755)
        (path / ".git" / "hooks" / name).write_text(script.read_text())
        (path / ".git" / "hooks" / name).chmod(0o755)
    included = path / "included.cfg"
    included.write_text(f"[core]\n\tfsmonitor = {script}\n[filter \"pwn\"]\n\tclean = {script}\n")
    return {"user": user, "ws": ws, "path": path, "markers": markers, "script": script,
            "hooks": hooks, "included": included, "base": base}


def _drive(path: Path) -> None:
    """What the executor and tester run on a working copy after tests ran in it."""
    (path / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    git(path, "status", "--porcelain")
    git(path, "ls-files", "--others", "--exclude-standard", "-z")
    git(path, "diff")
    sha = commit_all(path, "change")
    assert sha
    format_patch(path, sha)
    git_patch(path, "diff", "HEAD~1", "HEAD")
    git(path, "log", "-p", "-1")
    git(path, "checkout", "-q", "HEAD~1", "--", ".")
    git(path, "checkout", "-q", "--", ".")


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_planted_configuration_runs_nothing_on_the_host(copy, plant):
    config = copy["path"] / ".git" / "config"
    with config.open("a") as f:
        f.write(PLANTS[plant].format(script=copy["script"], hooks=copy["hooks"], included=copy["included"]))
    if plant == "worktree-config":
        (copy["path"] / ".git" / "config.worktree").write_text(f"[core]\n\tfsmonitor = {copy['script']}\n")
    (copy["path"] / ".git" / "info").mkdir(exist_ok=True)
    (copy["path"] / ".git" / "info" / "attributes").write_text("* filter=pwn diff=pwn merge=pwn\n")

    _drive(copy["path"])

    assert sorted(os.listdir(copy["markers"])) == [], f"{plant}: a planted program ran on the host"
    left = subprocess.run(["git", "config", "--file", str(config), "--list"], capture_output=True, text=True).stdout
    assert str(copy["script"]) not in left and "include" not in left, left


def test_a_nested_repository_planted_in_the_tree_is_never_entered(copy):
    nested = copy["path"] / "pkg" / "vendored"
    nested.mkdir()
    subprocess.run(["git", "init", "-q", str(nested)], check=True)
    (nested / "x.py").write_text("X = 1\n")
    subprocess.run(["git", "-C", str(nested), "add", "x.py"], check=True)
    subprocess.run(["git", "-C", str(nested), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x"],
                   check=True)
    with (nested / ".git" / "config").open("a") as f:
        f.write(f"[core]\n\tfsmonitor = {copy['script']}\n[filter \"pwn\"]\n\tclean = {copy['script']}\n")
    (nested / ".gitattributes").write_text("* filter=pwn\n")
    (nested / "x.py").write_text("X = 2\n")

    _drive(copy["path"])
    git(copy["path"] / "pkg", "status", "--porcelain")  # run from inside, below the planted repository
    git(nested, "status", "--porcelain")  # even when asked to run in it: the outer copy is the repository

    assert sorted(os.listdir(copy["markers"])) == []


def test_a_planted_git_file_is_refused(copy):
    dot = copy["path"] / ".git"
    os.rename(dot, copy["path"] / "real-git")
    (copy["path"] / ".git").write_text(f"gitdir: {copy['path'] / 'real-git'}\n")
    with pytest.raises(GitTampered, match="not a directory"):
        git(copy["path"], "status")


def test_objects_are_not_shared_with_the_user_repository(copy):
    """A rewritten object in a working copy (or its mirror) never reaches the user's repository."""
    path, user = copy["path"], copy["user"]
    blob = git(path, "rev-parse", "HEAD:pkg/__init__.py")
    loose = path / ".git" / "objects" / blob[:2] / blob[2:]
    assert loose.exists()
    assert os.stat(loose).st_nlink == 1, "the working copy's object is hardlinked"
    mirror_blob = copy["ws"].mirror_path(str(user)) / "objects" / blob[:2] / blob[2:]
    if mirror_blob.exists():
        assert os.stat(mirror_blob).st_nlink == 1, "the mirror's object is hardlinked"
    loose.chmod(0o644)
    loose.write_bytes(zlib.compress(b"blob 13\0VALUE = 666\n\n"))

    assert git(user, "cat-file", "-p", f"{blob}") == "VALUE = 1"
    subprocess.run(["git", "-C", str(user), "fsck", "--strict"], check=True, capture_output=True)


def test_a_clean_copy_is_read_once_and_left_alone(copy):
    config = copy["path"] / ".git" / "config"
    before = config.read_bytes()
    assert sanitise_repository(copy["path"] / ".git") == []
    _drive(copy["path"])
    assert config.read_bytes() == before
