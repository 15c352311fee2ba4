"""Bundled example repositories: `demo_repo` is what `repo-pilot demo` runs the pipeline on."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from shared.adapters.git import git

DEMO_AUTHOR = "Demo Maintainer"
DEMO_EMAIL = "maintainer@example.com"
# Fixed dates make the demo's commit (and so every run on it) identical on every machine.
_DEMO_DATE = "2024-05-01T12:00:00+00:00"


def demo_source() -> Path:
    return Path(str(resources.files("shared.examples").joinpath("demo_repo")))


def make_demo_repo(dest: Path) -> Path:
    """Copy the bundled demo repository to `dest` (absent or empty) and commit it on branch `main`."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    if dest.exists():
        dest.rmdir()
    # ruff.toml only keeps the project's own lint off the demo's deliberate findings; copies don't need it.
    shutil.copytree(
        demo_source(),
        dest,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", "ruff.toml"),
    )
    if not (
        dest / ".gitignore"
    ).exists():  # dotfiles can be lost in packaging; the demo needs its ignore list
        (dest / ".gitignore").write_text(
            "__pycache__/\n*.pyc\n.pytest_cache/\n.ruff_cache/\n", encoding="utf-8"
        )
    env = {
        "GIT_AUTHOR_NAME": DEMO_AUTHOR, "GIT_AUTHOR_EMAIL": DEMO_EMAIL, "GIT_AUTHOR_DATE": _DEMO_DATE,
        "GIT_COMMITTER_NAME": DEMO_AUTHOR, "GIT_COMMITTER_EMAIL": DEMO_EMAIL, "GIT_COMMITTER_DATE": _DEMO_DATE,
    }  # fmt: skip
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "Inventory: items, stock levels, reports and a CLI"],
    ):
        git(dest, *args, env=env)
    return dest
