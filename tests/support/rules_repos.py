"""Small real git repositories for the rules-engine and signals tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def git(repo: Path, *args: str, author: str = "Ada Lovelace") -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author.split()[0].lower()}@example.com",
        "GIT_COMMITTER_NAME": author, "GIT_COMMITTER_EMAIL": f"{author.split()[0].lower()}@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
    }  # fmt: skip
    proc = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"git {args}: {proc.stderr}"
    return proc.stdout.strip()


def write(repo: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def commit_all(repo: Path, message: str, author: str = "Ada Lovelace") -> str:
    git(repo, "add", "-A", author=author)
    git(repo, "commit", "-q", "--allow-empty", "-m", message, author=author)
    return git(repo, "rev-parse", "HEAD")


def make_repo(path: Path, files: dict[str, str], author: str = "Ada Lovelace") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    write(path, {".gitignore": "__pycache__/\n.pytest_cache/\n", **files})
    commit_all(path, "initial", author=author)
    return path


def run_pytest(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The repository's own suite, run the way its CI would (`python -m pytest` from its root)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


PYPROJECT = """\
[project]
name = "acme-widgets"
version = "1.2.0"
description = "Widgets."
readme = "README.md"
requires-python = ">=3.10"
license = { text = "MIT" }
authors = [{ name = "Ada Lovelace", email = "ada@example.com" }]
"""

# A package with one bugbear finding ruff fixes safely (B009), one hard-coded password (S105,
# no fix) and a passing test suite that exercises the code the fix touches.
WIDGETS = {
    "pyproject.toml": PYPROJECT,
    "README.md": "# acme-widgets\n",
    "widgets/__init__.py": '"""Widgets."""\n\nfrom widgets.core import Widget, describe\n\n__all__ = ["Widget", "describe"]\n'
    '__version__ = "1.2.0"\n',
    "widgets/core.py": (
        '"""Core widgets."""\n\n\nclass Widget:\n    def __init__(self, name: str) -> None:\n'
        "        self.name = name\n\n\ndef describe(widget: Widget) -> str:\n"
        '    return "widget " + getattr(widget, "name")\n'
    ),
    "widgets/settings.py": '"""Settings."""\n\nSERVICE_PASSWORD = "s3cr3t-service-pass"\n',
    "tests/test_core.py": (
        "from widgets import Widget, describe\n\n\ndef test_describe():\n"
        '    assert describe(Widget("spanner")) == "widget spanner"\n'
    ),
}


# A small package with textbook findings and a passing suite that calls the code they sit in:
# subprocess with shell=True (S602), `random` for a token (S311), requests without a timeout
# (S113), six unused imports (F401) and a comparison to None with `==` (E711).
TOOLS = {
    # it imports requests, so it declares it: its tests see only what it declares
    "pyproject.toml": PYPROJECT.replace("acme-widgets", "acme-tools").replace("1.2.0", "0.3.0")
    + 'dependencies = ["requests"]\n',
    "README.md": "# acme-tools\n",
    "acme/__init__.py": '"""Acme tools."""\n\n__version__ = "0.3.0"\n',
    "acme/tools.py": '''"""Small tools."""

import itertools
import json
import os
import random
import re
import string
import subprocess
import sys
from collections import OrderedDict
from typing import Optional

import requests


def make_token(length: int = 16) -> str:
    """A random token of letters and digits."""
    alphabet = string.ascii_letters + string.digits
    return "".join(random.choice(alphabet) for _ in range(length))


def echo_status(text: str) -> int:
    """The exit status of `echo text`."""
    return subprocess.run(["echo", text], shell=True, capture_output=True).returncode


def fetch_json(url: str) -> dict:
    """The JSON document at url."""
    return requests.get(url).json()


def describe(value: Optional[int] = None) -> str:
    """A short description of value."""
    if value == None:
        return "nothing"
    return f"number {value}"
''',
    "tests/test_tools.py": '''from acme.tools import describe, echo_status, make_token


def test_token_has_the_asked_length():
    assert len(make_token(24)) == 24


def test_tokens_differ():
    assert make_token() != make_token()


def test_echo_succeeds():
    assert echo_status("hello") == 0


def test_describe():
    assert describe() == "nothing"
    assert describe(3) == "number 3"
''',
}


# A fix that changes behaviour the suite relies on: with `shell=False` the command string is no
# longer split by a shell, so `greet` fails and its test names itself in the rejection.
SHELL_STRING = {
    "pyproject.toml": PYPROJECT.replace("acme-widgets", "acme-greet"),
    "README.md": "# acme-greet\n",
    "greet/__init__.py": '"""Greetings."""\n',
    "greet/core.py": (
        '"""Greetings through the shell."""\n\nimport subprocess\n\n\n'
        "def greet(name: str) -> str:\n"
        '    return subprocess.run("echo hello " + name, shell=True, capture_output=True, text=True).stdout.strip()\n'
    ),
    "tests/test_greet.py": (
        "from greet.core import greet\n\n\ndef test_greet_says_hello():\n"
        '    assert greet("ada") == "hello ada"\n'
    ),
}
