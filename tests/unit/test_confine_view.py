"""The sandbox's filesystem view as a plan (shared/adapters/confine.py: view): what a command
brings into the view with it. The view itself, built for real, is tested in
tests/integration/test_sandbox_confinement.py."""

from pathlib import Path

import pytest

from shared.adapters.confine import bwrap_argv, view

pytestmark = pytest.mark.unit


def _shown(ops):
    return {args[-1] for _op, *args in ops if _op in ("ro-bind", "bind")}


def test_a_system_command_does_not_bring_the_host_root_or_a_second_usr(tmp_path):
    for exe in ("/bin/sh", "/usr/bin/env", "/sbin/ldconfig"):
        ops, _cmd = view([exe, "-c", "true"], tmp_path, str(tmp_path / "home"))
        assert "/" not in _shown(ops), exe
        assert [a for op, *a in ops if op == "ro-bind" and a[0] == "/usr"] in ([], [["/usr", "/usr"]]), exe


def test_a_virtualenv_or_toolchain_outside_the_system_paths_is_shown_read_only(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    ops, cmd = view([str(venv / "bin" / "python"), "-m", "pytest"], tmp_path / "work", str(tmp_path / "home"))
    assert ["ro-bind", str(venv), str(venv)] in ops and cmd[0] == str(venv / "bin" / "python")


def test_the_working_copy_and_home_are_the_writable_binds_and_come_last(tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    ops, _cmd = view(["/bin/true"], work, str(home))
    assert ops[-2:] == [["bind", str(work), str(work)], ["bind", str(home), str(home)]]
    assert [op for op, *_ in ops].count("bind") == 2


def test_bwrap_renders_the_same_plan(tmp_path):
    ops, _cmd = view(["/bin/true"], tmp_path, str(tmp_path))
    argv = bwrap_argv(["/bin/true"], tmp_path, str(tmp_path), network=False)
    rendered = [part for op, *args in ops for part in (f"--{op}", *args)]
    start = argv.index(rendered[0])
    assert argv[start:start + len(rendered)] == rendered
    assert argv[-2:] == ["--", "/bin/true"] and Path(argv[0]).name == "bwrap"
