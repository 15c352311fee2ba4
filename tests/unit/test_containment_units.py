"""Containment building blocks (issue 12): the one door for writes, names from target metadata,
settings only from the user, the redactor, URL credentials, stream ids."""

from __future__ import annotations

import logging
import os

import pytest

from shared.common.fs import UnsafePath, one_line, write_inside
from shared.common.redaction import MASK, RedactingFilter, redact, register_secrets
from shared.events.envelope import check_stream_id

pytestmark = pytest.mark.unit


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "pkg").mkdir()
    return root


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside"
    path.mkdir()
    return path


def test_write_inside_creates_parents_and_returns_the_real_path(repo):
    written = write_inside(repo, "a/b/c.txt", "hello")
    assert written == (repo / "a" / "b" / "c.txt").resolve() and written.read_text() == "hello"
    write_inside(repo, "a/b/c.txt", b"bytes")  # overwrites
    assert written.read_bytes() == b"bytes"


@pytest.mark.parametrize("link", ["CONTRIBUTING.md", "docs", ".github"])
def test_write_inside_refuses_symlinks_out_and_writes_nothing(repo, outside, link):
    target = outside / ("authorized_keys" if link.endswith(".md") else "dir")
    if not link.endswith(".md"):
        target.mkdir()
    os.symlink(target, repo / link)
    rel = link if link.endswith(".md") else f"{link}/workflows/ci.yml"
    with pytest.raises(UnsafePath, match="outside the repository"):
        write_inside(repo, rel, "ssh-rsa AAAA attacker\n")
    assert sorted(p.name for p in outside.rglob("*")) == ([] if link.endswith(".md") else ["dir"])


def test_write_inside_refuses_a_symlink_swapped_in_after_the_check(repo, outside, monkeypatch):
    """The O_NOFOLLOW walk catches what a resolve-then-write check would miss (a race)."""
    import shared.common.fs as fs

    real = fs.resolve_inside

    def racing(root, rel):
        resolved = real(root, rel)
        (repo / "docs").rmdir()
        os.symlink(outside, repo / "docs")
        return resolved

    (repo / "docs").mkdir()
    monkeypatch.setattr(fs, "resolve_inside", racing)
    with pytest.raises(UnsafePath, match="symlink"):
        write_inside(repo, "docs/x.md", "x")
    assert list(outside.iterdir()) == []


def test_write_inside_follows_a_symlink_that_stays_inside(repo):
    os.symlink(repo / "pkg", repo / "alias")
    assert write_inside(repo, "alias/m.py", "x = 1\n") == (repo / "pkg" / "m.py").resolve()


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", ".git/config", "a/../../x", ""])
def test_write_inside_refuses_paths_that_leave(repo, rel):
    with pytest.raises(UnsafePath):
        write_inside(repo, rel, "x")


def test_one_line_strips_newlines_controls_and_bidi():
    assert one_line("evil\nssh-rsa AAAA attacker") == "evil ssh-rsa AAAA attacker"
    assert one_line("a\r\x00b\x1b[31m\u202ec") == "a b [31mc"
    assert len(one_line("x" * 1000)) == 200


# -- settings -------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "AUTO_MERGE_THRESHOLD", "REPO_PILOT_ENV_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REPO_PILOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def test_a_dotenv_in_the_current_directory_is_ignored(clean_env, monkeypatch):
    from shared.common.settings import Settings

    target = clean_env / "target"
    target.mkdir()
    (target / ".env").write_text("OPENAI_BASE_URL=http://evil/v1\nAUTO_MERGE_THRESHOLD=1\n")
    monkeypatch.chdir(target)
    settings = Settings()
    assert settings.openai_base_url is None and settings.auto_merge_threshold == 7.0


def test_dotenv_files_the_user_owns_are_read_the_named_one_last(clean_env, monkeypatch):
    from shared.common.settings import EnvFileError, Settings

    (clean_env / "home").mkdir()
    (clean_env / "home" / ".env").write_text("AUTO_MERGE_THRESHOLD=8\nOPENAI_MODEL=from-home\n")
    assert Settings().auto_merge_threshold == 8.0
    named = clean_env / "chosen.env"
    named.write_text("AUTO_MERGE_THRESHOLD=9\n")
    monkeypatch.setenv("REPO_PILOT_ENV_FILE", str(named))
    settings = Settings()
    assert settings.auto_merge_threshold == 9.0 and settings.openai_model == "from-home"
    monkeypatch.setenv("REPO_PILOT_ENV_FILE", str(clean_env / "missing.env"))
    with pytest.raises(EnvFileError, match="not a file"):
        Settings()


# -- redaction ------------------------------------------------------------------------------------


def test_redact_masks_registered_values_urls_assignments_and_known_key_shapes():
    register_secrets(["sk-unit-test-key-0123", "postgresql://u:dbpass-unit-77@h/db"])
    text = ("key sk-unit-test-key-0123 and dbpass-unit-77\n"
            "clone https://me:tok3n@github.com/o/r.git\n"
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\x00PATH=/usr/bin\n"
            "aws AKIAIOSFODNN7EXAMPLE\n"
            'password = "hunter2hunter2"\n'
            "push with ghp_a1B2c3D4e5a1B2c3D4e5a1B2c3D4e5a1B2c3 then glpat-a1B2c3D4e5a1B2c3D4e5x done\n"
            "commit 5ab67604ba5ab67604ba5ab67604ba5ab67604ba run-01a2325c-39af-7710-8ea4-03a1589c09f5\n")
    out = redact(text)
    for secret in ("sk-unit-test-key-0123", "dbpass-unit-77", "tok3n", "wJalrXUtnFEMI", "AKIAIOSFODNN7EXAMPLE",
                   "hunter2hunter2", "a1B2c3D4e5a1B2c3D4e5"):  # the GitHub and GitLab tokens' bodies
        assert secret not in out, out
    assert MASK in out and "PATH=/usr/bin" in out and "push with [REDACTED] then" in out and " done\n" in out
    assert "5ab67604ba5ab67604ba5ab67604ba5ab67604ba run-01a2325c-39af-7710-8ea4-03a1589c09f5" in out


def test_the_logging_filter_redacts_formatted_messages():
    register_secrets(["sk-log-filter-secret"])
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "calling with %s", ("sk-log-filter-secret",), None)
    RedactingFilter().filter(record)
    assert "sk-log-filter-secret" not in record.getMessage()


# -- requests and envelopes ---------------------------------------------------------------------------


def test_a_url_with_a_token_is_refused_without_repeating_it():
    from shared.app.requests import refuse_url_credentials

    with pytest.raises(ValueError, match="password or token") as refused:
        refuse_url_credentials("https://user:ghp_TOKEN123@github.com/o/r.git")
    assert "ghp_TOKEN123" not in str(refused.value)
    assert refuse_url_credentials("https://user@host/r.git") == "https://user@host/r.git"
    assert refuse_url_credentials("/some/path") == "/some/path"


@pytest.mark.parametrize("bad", ["run-/../../escape", "run-..", "gen-a/b", "run-", "job-1", "run-a.b", 7])
def test_stream_ids_must_be_path_safe(bad):
    with pytest.raises(ValueError, match="stream id"):
        check_stream_id(bad)


def test_stream_ids_in_use_pass():
    from shared.events import new_gen_stream, new_run_stream

    for good in (new_run_stream(), new_gen_stream(), "run-1", "run-a"):
        assert check_stream_id(good) == good
