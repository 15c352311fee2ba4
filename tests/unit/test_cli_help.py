"""`repo-pilot … --help` as a user reads it: flags take no value, so no `<bool>` after them."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from shared.app.cli import app

pytestmark = pytest.mark.unit


def _paths(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():  # a group (typer vendors its click)
        yield from _paths(sub, (*path, name))


def test_no_command_shows_a_type_after_a_flag():
    root = typer.main.get_command(app)
    paths = list(_paths(root))
    assert ("run",) in paths and ("servers", "stop") in paths and ("events",) in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "160"}, terminal_width=160)
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, (path, result.output)
    run_help = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "160"}).output
    assert "--no-local" in run_help and "<float>" in run_help  # options that take a value keep their type
