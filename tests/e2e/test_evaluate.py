"""`make eval`: a corpus directory of a bundle and a plain repository, run for real, one row each."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared.app.evaluate import corpus_entries, is_source_change
from tests.conftest import make_git_repo

pytestmark = pytest.mark.e2e


def test_source_changes_are_told_from_tests_docs_and_config():
    assert is_source_change(["pkg/core.py"]) and is_source_change(["src/lib.rs"])
    assert not is_source_change(["tests/test_core.py", "docs/conf.py", "SECURITY.md", ".github/dependabot.yml"])


def test_eval_runs_every_repository_of_a_corpus(settings, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    make_git_repo(corpus / "plainrepo", {"plainrepo/__init__.py": "def hello():\n    return 'hi'\n",
                                         "tests/test_hello.py": "from plainrepo import hello\n\n\n"
                                                                "def test_hello():\n    assert hello() == 'hi'\n"})
    src = make_git_repo(tmp_path / "bundled", {"app.py": "import os\n\n\ndef cwd():\n    return os.getcwd()\n"})
    subprocess.run(["git", "-C", str(src), "bundle", "create", str(corpus / "bundled.bundle"), "--all"],
                   check=True, capture_output=True)
    assert [p.name for p in corpus_entries(corpus)] == ["bundled.bundle", "plainrepo"]
    env = {**os.environ, "NATS_URL": settings.nats_url, "DATABASE_URL": settings.database_url,
           "REPO_PILOT_DB_SCHEMA": settings.db_schema, "REPO_PILOT_STREAM": settings.stream_name,
           "REPO_PILOT_SUBJECT_PREFIX": settings.subject_prefix, "REPO_PILOT_HOME": str(settings.home)}
    env = {k: v for k, v in env.items() if not k.startswith("OPENAI_")}
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "shared.app.evaluate", str(corpus), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["repo"] for r in rows] == ["bundled", "plainrepo"]
    assert all(r["status"] == "completed" for r in rows), rows
    assert all(r["internal_name_files"] == [] for r in rows)
    plain = rows[1]
    assert (plain["own_before"]["passed"], plain["own_after"]["passed"]) == (1, 1)
    assert "| plainrepo |" in proc.stdout and "| bundled |" in proc.stdout
    assert (corpus / "plainrepo" / ".git").exists() and len(list((corpus / "plainrepo").iterdir())) == 3  # untouched
