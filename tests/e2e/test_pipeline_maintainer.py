"""What merges is what the project's maintainer would merge (issue 19): a whole offline run over real
NATS, Postgres, git, ruff and pytest on a package with its own ruff configuration, its community docs
under `.github/`, a stated version, and `random` feeding both a session token and seeded retry jitter."""

from __future__ import annotations

import json
import subprocess

import pytest

from shared.adapters.analyzers import tool_command
from shared.events import PipelineRequested
from tests.support.pipeline import run_pipeline
from tests.support.rules_repos import git, make_repo, run_pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

PYPROJECT = '''[project]
name = "acme-sessions"
version = "4.16.0"
description = "Login sessions."
readme = "README.md"
requires-python = ">=3.10"
license = "MIT"
authors = [{name = "Ada Lovelace", email = "ada@example.com"}]

[tool.ruff]
line-length = 100

[tool.ruff.lint]
extend-select = ["UP"]
ignore = ["UP006", "UP035"]
'''
TOKENS = '''"""Session tokens and retry timing."""

import random
import string
from typing import List


def new_session_token(length: int = 32) -> str:
    """A token that identifies a login session."""
    alphabet = string.ascii_letters + string.digits
    return "".join(random.choice(alphabet) for _ in range(length))


def retry_delays(attempts: int, base: float = 0.5) -> List[float]:
    """Exponential backoff with jitter; seed `random` to reproduce a schedule."""
    return [base * 2**n + random.uniform(0, base) for n in range(attempts)]
'''
TESTS = '''import random

from acme_sessions.tokens import new_session_token, retry_delays


def test_token_length_and_alphabet():
    token = new_session_token(20)
    assert len(token) == 20 and token.isalnum()


def test_jitter_is_reproducible_when_seeded():
    random.seed(7)
    first = retry_delays(4)
    random.seed(7)
    assert retry_delays(4) == first
'''
FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": "# acme-sessions\n\nLogin sessions.\n",
    "LICENSE": "MIT License\n\nCopyright (c) 2024 Ada Lovelace\n",
    ".github/SECURITY.md": "# Security\n\nMail ada@example.com.\n",
    ".github/CONTRIBUTING.md": "# Contributing\n\nRun `pytest`.\n",
    ".github/workflows/ci.yml": "on: [push]\njobs: {}\n",
    "acme_sessions/__init__.py": '"""Login sessions."""\n\n__version__ = "4.16.0"\n',
    "acme_sessions/tokens.py": TOKENS,
    "tests/__init__.py": "",
    "tests/test_tokens.py": TESTS,
}


def _ruff(repo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*tool_command("ruff"), *args], cwd=repo, capture_output=True, text=True, check=False)


def _own_findings(repo) -> list[str]:
    out = _ruff(repo, "check", "--output-format", "json", "--exit-zero", ".").stdout
    return sorted(f"{f['filename'].rsplit('/', 1)[-1]} {f['code']}" for f in json.loads(out or "[]"))


async def test_the_token_is_fixed_and_merged_the_jitter_and_the_projects_rules_are_kept(settings, tmp_path):
    repo = make_repo(tmp_path / "acme-sessions", FILES)
    base = git(repo, "rev-parse", "main")
    findings_before = _own_findings(repo)
    assert _ruff(repo, "format", "--check", ".").returncode == 0  # formatted at the base

    run, _, events = await run_pipeline(settings, PipelineRequested(repo=str(repo), engine="rules"), timeout=900)
    assert run["status"] == "COMPLETED", run["error"]
    applied = {e.data.improvement_id: e.data for e in events if e.type == "ChangeApplied"}
    rejected = {e.data.improvement_id: e.data.reason for e in events if e.type == "ChangeRejected"}
    assert "security-secure-random" in applied, rejected
    summary = applied["security-secure-random"].summary
    assert "returned by `new_session_token()`" in summary and "retry_delays" in summary  # fixed / left, and why
    assert run["merged"] is True, run["error"]

    git(repo, "checkout", "-q", "main")
    tokens = (repo / "acme_sessions/tokens.py").read_text()
    assert "secrets.SystemRandom().choice(alphabet)" in tokens  # the token is no longer predictable
    assert "random.uniform(0, base)" in tokens and "List[float]" in tokens  # jitter and ignored UP006 kept
    own = run_pytest(repo, "tests/test_tokens.py")
    assert own.returncode == 0, own.stdout[-2000:]  # the seeded jitter sequence still reproduces

    # nothing duplicated or invented; nothing the project's own ruff configuration objects to
    tree = set(git(repo, "ls-tree", "-r", "--name-only", "main").splitlines())
    assert not {"SECURITY.md", "CONTRIBUTING.md", ".github/dependabot.yml", ".pre-commit-config.yaml",
                "mypy.ini"} & tree, sorted(tree)  # fmt: skip
    if "CHANGELOG.md" in tree:
        changelog = (repo / "CHANGELOG.md").read_text()
        assert "4.16.0" in changelog and "0.1.0" not in changelog
    findings_after = [f for f in _own_findings(repo) if not f.startswith("test_")]
    assert set(findings_after) <= set(findings_before), (findings_before, findings_after)
    changed_code = git(repo, "diff", "--name-only", base, "main", "--", "acme_sessions").splitlines()
    assert _ruff(repo, "format", "--check", *changed_code).returncode == 0
