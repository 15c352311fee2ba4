"""Containment over real processes (issue 12): what a hostile target repository can make Repo Pilot
do, run through the real CLI (`repo-pilot run`) against real NATS, Postgres, git and sandbox.

- a test suite that reads every process's environ, the user's ~/.ssh key, writes outside the
  repository, connects to the bus and leaves a `setsid` child: contained, its attempts visible as
  failures, no secret in any event or in the run log, no child left;
- a repository whose CONTRIBUTING.md is a dangling symlink to outside and whose tests/, docs/ and
  .github/ are symlinks to outside directories: nothing written outside over a whole run;
- a `.env` in the current directory (the target repository) is not read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import make_git_repo

pytestmark = pytest.mark.e2e


def cli(env, *args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "shared.app.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def stored_events(env, run_id: str) -> str:
    proc = cli(env, "events", run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_id_of(output: str) -> str:
    return next(w for w in output.replace("\n", " ").split() if w.startswith("run-") and len(w) > 30).strip(".,:")


def alive(token: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = entry.joinpath("cmdline").read_bytes().decode(errors="replace")
                state = entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if token in cmdline and state not in ("Z", "X"):
                found.append(f"{entry.name}: {cmdline!r}")
    return found


# The marker is split in the source: a secret hard-coded in the target's own files can still appear
# as diff context in a stored patch (docs/security.md); this test is about secrets of the environment.
HOSTILE = '''
import os, pathlib, socket, subprocess
MARKER = "{marker_head}" + "{marker_tail}"

def test_environ_of_every_process():
    seen = []
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                seen.append(proc.joinpath("environ").read_bytes().decode(errors="replace"))
            except OSError:
                pass
    assert not any(MARKER in e for e in seen), "\\n".join(seen)

def test_parent_environ():
    text = pathlib.Path(f"/proc/{{os.getppid()}}/environ").read_bytes().decode(errors="replace")
    assert MARKER not in text, text

def test_ssh_key():
    print(pathlib.Path("{home}/.ssh/id_rsa").read_text())

def test_write_outside():
    pathlib.Path("{outside}/pwned.txt").write_text("pwned")

def test_bus():
    socket.create_connection(("127.0.0.1", {bus_port}), timeout=3).close()

def test_setsid_child():
    subprocess.Popen(["sleep", "{token}"], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
'''


def test_a_hostile_test_suite_is_contained_and_no_secret_is_stored(cli_env, tmp_path, nats_url):
    marker = f"SeCrEt{uuid.uuid4().hex}"
    home, outside = tmp_path / "user-home", tmp_path / "outside"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\nFAKEKEY{marker}\n")
    outside.mkdir()
    token = str(uuid.uuid4().int % 10**7 + 10**7)
    repo = make_git_repo(tmp_path / "hostile", {
        "pyproject.toml": '[project]\nname = "hostile"\nversion = "0.1.0"\n',
        "hostile/__init__.py": "",
        "tests/test_hostile.py": HOSTILE.format(marker_head=marker[:12], marker_tail=marker[12:], home=home,
                                                outside=outside,
                                                bus_port=urlparse(nats_url).port, token=token),
    })
    env = {**cli_env, "HOME": str(home), "AWS_SECRET_ACCESS_KEY": marker, "MY_SERVICE_TOKEN": marker,
           "HOSTILE_MARKER": marker}
    proc = cli(env, "run", str(repo), "--local", "--categories", "compliance")
    output = proc.stdout + proc.stderr
    run_id = run_id_of(output)
    events = stored_events(env, run_id)
    run_log = (Path(cli_env["REPO_PILOT_HOME"]) / "runs" / f"{run_id}.json")

    assert marker not in events and marker not in output
    if run_log.exists():
        assert marker not in run_log.read_text()
    assert list(outside.iterdir()) == [], "a test wrote outside the repository"
    assert alive(token) == [], "the setsid child outlived the run"

    completed = [json.loads(line) for line in events.splitlines() if '"TestsCompleted"' in line]
    assert completed, output
    own = completed[0]["data"]["own_before"]
    failing = own["output"]
    for attempt in ("test_ssh_key", "test_write_outside", "test_bus"):
        assert f"FAILED tests/test_hostile.py::{attempt}" in failing or attempt in failing, failing
    assert own["failed"] >= 3 and own["passed"] >= 3, own  # environ tests pass: nothing to read


def test_symlinks_out_of_the_repository_receive_nothing(cli_env, tmp_path):
    outside = {name: tmp_path / "outside" / name for name in ("tests", "docs", "github", "keys")}
    for path in outside.values():
        path.mkdir(parents=True)
    repo = make_git_repo(tmp_path / "linked", {
        # a name with a newline and a key line: must not become a line of any written file
        "pyproject.toml": '[project]\nname = "evil\\nssh-rsa AAAAB3Nza attacker"\nversion = "0.1.0"\n'
                          'license = {text = "MIT"}\n',
        "evil/__init__.py": "def f(x):\n    return x\n",
    })
    for link, target in (("CONTRIBUTING.md", outside["keys"] / "authorized_keys"), ("tests", outside["tests"]),
                         ("docs", outside["docs"]), (".github", outside["github"])):
        os.symlink(target, repo / link)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "links"],
                   check=True)
    proc = cli(cli_env, "run", str(repo), "--local", "--categories", "compliance,features,security,integration",
               "--threshold", "1")
    output = proc.stdout + proc.stderr
    written = sorted(str(p) for p in (tmp_path / "outside").rglob("*") if p.is_file())
    assert written == [], f"written outside the repository: {written}\n{output}"
    run_id = run_id_of(output)
    events = stored_events(cli_env, run_id)
    assert "PipelineCompleted" in events or "PipelineFailed" in events, output
    assert "unsafe path" in events, "no write was refused: the probe did not reach the writers"
    for rel in ("LICENSE", "SECURITY.md"):
        shown = subprocess.run(["git", "-C", str(repo), "log", "--all", "-p", "--", rel],
                               capture_output=True, text=True).stdout
        assert "\nssh-rsa" not in shown.replace("+ssh-rsa", "\nssh-rsa"), shown


def test_a_dotenv_in_the_current_directory_is_not_read(cli_env, tmp_path):
    repo = make_git_repo(tmp_path / "with-env", {"app.py": "print('hi')\n"})
    (repo / ".env").write_text("OPENAI_BASE_URL=http://127.0.0.1:9/v1\nOPENAI_API_KEY=stolen\n"
                               "AUTO_MERGE_THRESHOLD=1\nDATABASE_URL=postgresql://evil@127.0.0.1:1/evil\n")
    proc = cli(cli_env, "request", ".", "--categories", "security", cwd=repo, timeout=120)
    assert proc.returncode == 0, proc.stderr  # DATABASE_URL from the .env would not connect
    run_id = proc.stdout.strip()
    [requested] = [json.loads(line) for line in stored_events(cli_env, run_id).splitlines()]
    assert requested["data"]["engine"] == "rules"  # no model configured by the .env
    assert requested["data"]["threshold"] == 7.0  # not lowered to 1

    chosen = tmp_path / "mine.env"
    chosen.write_text("AUTO_MERGE_THRESHOLD=9.5\n")
    other = make_git_repo(tmp_path / "other", {"app.py": "print('hi')\n"})  # one run per target at a time
    named = cli(cli_env, "--env-file", str(chosen), "request", ".", "--categories", "security", cwd=other,
                timeout=120)
    assert named.returncode == 0, named.stderr
    [asked] = [json.loads(line) for line in stored_events(cli_env, named.stdout.strip()).splitlines()]
    assert asked["data"]["threshold"] == 9.5  # a file the user names is read
    missing = cli(cli_env, "--env-file", str(tmp_path / "nope.env"), "runs", timeout=120)
    assert missing.returncode == 2 and "not a file" in missing.stderr


# A test suite that plants every kind of command-running git configuration in its working copy and
# rewrites the copy's objects in place (issue 17). `{script}` appends to the marker directory when run.
HOSTILE_GIT = '''
import pathlib, subprocess, zlib

GIT = pathlib.Path(".git")
SCRIPT = "{script}"
PLANT = """
[core]
\\tfsmonitor = {{s}}
\\tpager = {{s}}
\\teditor = {{s}}
\\tsshCommand = {{s}}
\\taskPass = {{s}}
\\thooksPath = {{hooks}}
\\tgitProxy = {{s}}
\\talternateRefsCommand = {{s}}
[sequence]
\\teditor = {{s}}
[diff]
\\texternal = {{s}}
[diff "pwn"]
\\ttextconv = {{s}}
\\tcommand = {{s}}
[filter "pwn"]
\\tclean = {{s}}
\\tsmudge = {{s}}
\\tprocess = {{s}}
[merge "pwn"]
\\tdriver = {{s}}
[gpg]
\\tprogram = {{s}}
[commit]
\\tgpgSign = true
[credential]
\\thelper = !{{s}}
[uploadpack]
\\tpackObjectsHook = {{s}}
[include]
\\tpath = {{included}}
"""

def test_plant_git_config():
    hooks = pathlib.Path("pwn-hooks").resolve()
    hooks.mkdir(exist_ok=True)
    for name in ("pre-commit", "post-checkout", "post-commit", "applypatch-msg"):
        (hooks / name).write_text("#!/bin/sh\\n" + SCRIPT + "\\n")
        (hooks / name).chmod(0o755)
    included = pathlib.Path("pwn.cfg").resolve()
    included.write_text("[core]\\n\\tfsmonitor = " + SCRIPT + "\\n")
    with (GIT / "config").open("a") as f:
        f.write(PLANT.format(s=SCRIPT, hooks=hooks, included=included))

def test_plant_attributes():
    (GIT / "info").mkdir(exist_ok=True)
    (GIT / "info" / "attributes").write_text("* filter=pwn diff=pwn merge=pwn\\n")

def test_plant_hooks():
    for name in ("pre-commit", "post-checkout", "post-commit", "applypatch-msg"):
        (GIT / "hooks" / name).write_text("#!/bin/sh\\n" + SCRIPT + "\\n")
        (GIT / "hooks" / name).chmod(0o755)

def test_rewrite_objects():
    rewritten = 0
    for obj in (GIT / "objects").glob("??/*"):
        data = zlib.decompress(obj.read_bytes())
        if data.startswith(b"blob "):
            body = b"TAMP" + b"ERED\\n"
            obj.chmod(0o644)
            obj.write_bytes(zlib.compress(b"blob %d\\0" % len(body) + body))
            rewritten += 1
    assert rewritten

def test_nested_repository():
    nested = pathlib.Path("hostile/vendored")
    nested.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(nested)], check=True)
    with (nested / ".git" / "config").open("a") as f:
        f.write("[core]\\n\\tfsmonitor = " + SCRIPT + "\\n")
'''


@pytest.mark.parametrize("isolation", ["auto", "none"])
def test_a_test_suite_planting_git_configuration_runs_nothing_on_the_host(cli_env, tmp_path, isolation):
    """Whatever the sandbox level (`none`: the tests can write their copy's `.git`), nothing the
    suite plants runs on the host, the user's repository is intact, and the run completes."""
    markers = tmp_path / "markers"
    markers.mkdir()
    script = tmp_path / "planted.sh"
    script.write_text(f'#!/bin/sh\necho "$0 $*" >> {markers}/ran-$$\ncat >/dev/null 2>&1\n')
    script.chmod(0o755)
    files = {
        "pyproject.toml": '[project]\nname = "hostile"\nversion = "0.1.0"\n',
        "hostile/__init__.py": "def add(a, b):\n    return a + b\n",
        ".gitattributes": "*.py diff=pwn\n",
        "tests/test_add.py": "from hostile import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
        "tests/test_zz_git.py": HOSTILE_GIT.format(script=script),
    }
    repo = make_git_repo(tmp_path / "hostile", files)
    original = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    env = {**cli_env, "REPO_PILOT_ISOLATION": isolation}
    proc = cli(env, "run", str(repo), "--local", "--categories", "compliance,security", "--threshold", "1")
    output = proc.stdout + proc.stderr

    assert sorted(os.listdir(markers)) == [], f"planted git configuration ran on the host\n{output}"
    subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], check=True, capture_output=True)
    for rel, content in files.items():
        at_start = subprocess.run(["git", "-C", str(repo), "show", f"{original.strip()}:{rel}"],
                                  capture_output=True, text=True).stdout
        assert at_start == content, f"{rel}: the user's history reads differently"
        shown = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{rel}"], capture_output=True, text=True)
        assert "TAMPERED" not in shown.stdout, rel
        assert (repo / rel).read_text() == shown.stdout, f"{rel}: working tree differs from HEAD"
    assert subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True).stdout == ""
    run_id = run_id_of(output)
    events = stored_events(env, run_id)
    assert '"PipelineCompleted"' in events, output
    own = next(json.loads(line) for line in events.splitlines() if '"TestsCompleted"' in line)["data"]["own_before"]
    if isolation == "auto" and "not confined" not in output:
        # A filesystem view: `.git` is read-only inside, so every plant fails as a test.
        for attempt in ("test_plant_git_config", "test_plant_attributes", "test_plant_hooks", "test_rewrite_objects"):
            assert attempt in own["output"], own["output"]
    else:
        assert "changed by code under test" in output, output
