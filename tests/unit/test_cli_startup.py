"""The CLI leaves the generator (and the openai SDK it imports) out of commands that do not need it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.app.cli import _invoked_command

pytestmark = pytest.mark.unit

PROBE = "import sys; sys.argv = {argv!r}; import shared.app.cli; print('openai' in sys.modules)"


def _imports_openai(argv: list[str]) -> bool:
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, check=True)
    return done.stdout.strip() == "True"


def test_the_command_word_comes_after_the_apps_own_options():
    assert _invoked_command(["repo-pilot", "--env-file", "runs", "status", "run-1"]) == "status"
    assert _invoked_command(["repo-pilot", "--help"]) is None


def test_runs_and_status_do_not_import_the_model_sdk_but_generate_and_help_do():
    assert not _imports_openai(["repo-pilot", "runs"])
    assert not _imports_openai(["repo-pilot", "status", "run-1"])
    assert not _imports_openai(["repo-pilot", "servers", "stop"])  # a command group's command
    assert _imports_openai(["repo-pilot", "generate", "--help"])
    assert _imports_openai(["repo-pilot", "--help"])
