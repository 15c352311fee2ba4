"""Running git: the one door every git command goes through (workspace, forges, analyzers,
engines, services, the generator).

Every call is isolated from the user's git setup: no global or system config, no hooks, a fixed
identity (so commits made by the pipeline are attributable and reproducible, and a user's
`core.hooksPath` or `merge.conflictStyle` cannot change a result), and it never prompts for
credentials (a prompt would hang a service forever).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from pathlib import Path

from shared.common.telemetry import git_span

IDENTITY_NAME = "Repo Pilot"
IDENTITY_EMAIL = "repo-pilot@localhost"


class GitError(RuntimeError):
    """A git command failed; the message names the command and carries git's stderr."""

    def __init__(self, args: list[str], returncode: int, stderr: str, stdout: str = ""):
        self.args_list = args
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        detail = (stderr or stdout).strip()
        super().__init__(f"`{' '.join(args)}` failed (exit {returncode}): {detail}")


def git_env(extra: dict | None = None) -> dict[str, str]:
    """The environment git runs with: the caller's, plus the pipeline identity and no prompts.

    Values in `extra` win, so a caller can pass its own author or committer.
    """
    env = dict(os.environ)
    env.update(
        {
            "GIT_AUTHOR_NAME": IDENTITY_NAME,
            "GIT_AUTHOR_EMAIL": IDENTITY_EMAIL,
            "GIT_COMMITTER_NAME": IDENTITY_NAME,
            "GIT_COMMITTER_EMAIL": IDENTITY_EMAIL,
            "GIT_TERMINAL_PROMPT": "0",
            # A user's global config (hooks, signing, templates, merge style) must not change what we
            # produce: no system or global file, and hooks off through the environment's config.
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "core.hooksPath",
            "GIT_CONFIG_VALUE_0": os.devnull,
            "GIT_CONFIG_KEY_1": "commit.gpgsign",
            "GIT_CONFIG_VALUE_1": "false",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_SSH_COMMAND": env.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
        }
    )
    if extra:
        env.update(extra)
    return env


def git(
    repo: Path,
    *args: str,
    check: bool = True,
    env: dict | None = None,
    input: str | None = None,
) -> str:
    """Run `git -C repo ARGS` and return its stdout, stripped.

    Raises GitError (command and stderr in the message) when `check` and git exits non-zero.
    """
    proc = run_git(repo, *args, env=env, input=input)
    if check and proc.returncode != 0:
        raise GitError(["git", "-C", str(repo), *args], proc.returncode, proc.stderr, proc.stdout)
    return proc.stdout.strip()


def run_git(
    repo: Path,
    *args: str,
    env: dict | None = None,
    input: str | bytes | None = None,  # noqa: A002
    text: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run `git -C repo ARGS` isolated (see the module docstring) and return the finished process
    unchecked, stdout untouched (bytes when `text` is false): for callers that read exit codes
    themselves or need output byte for byte."""
    with git_span(args):
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            check=False,
            capture_output=True,
            text=text,
            errors="replace" if text else None,
            env=git_env(env),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=timeout,
            # Its own session: Ctrl-C at the terminal interrupts Repo Pilot, which releases the step
            # for redelivery, instead of killing git mid-merge and being recorded as a failed step.
            start_new_session=True,
        )


def git_patch(repo: Path, *args: str, env: dict | None = None) -> str:
    """Run a git command that writes a diff or patch (`diff`, `format-patch`, `show`) and return
    its stdout byte for byte: never stripped (a hunk's last line may be a blank context line, a
    single space) and decoded as UTF-8 strictly, never with replacement characters.

    When a file the patch touches is not UTF-8 text, the command runs again with every path
    treated as binary, so the patch is carried exactly (git's base85 binary form) instead of
    being corrupted. Raises GitError when git fails.
    """
    proc = run_git(repo, *args, env=env, text=False)
    _check_raw(repo, args, proc)
    try:
        return proc.stdout.decode("utf-8")
    except UnicodeDecodeError:
        pass
    with tempfile.TemporaryDirectory(prefix="repo-pilot-attrs-") as tmp:
        attributes = Path(tmp) / "attributes"
        attributes.write_text("* binary\n")
        proc = run_git(repo, "-c", f"core.attributesFile={attributes}", *args, env=env, text=False)
    _check_raw(repo, args, proc)
    return proc.stdout.decode("utf-8")


def git_apply_patch(repo: Path, *args: str, patch: str, env: dict | None = None) -> None:
    """Feed `patch` (from `git_patch`) to `git ARGS` (`apply`, `am`) as the exact UTF-8 bytes it
    was made from. Raises GitError carrying git's own reason when it does not apply."""
    proc = run_git(repo, *args, env=env, input=patch.encode("utf-8"), text=False)
    _check_raw(repo, args, proc)


def _check_raw(repo: Path, args: tuple[str, ...], proc: subprocess.CompletedProcess) -> None:
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        stdout = proc.stdout.decode("utf-8", "replace")
        raise GitError(["git", "-C", str(repo), *args], proc.returncode, stderr, stdout)


async def agit(
    repo: Path,
    *args: str,
    check: bool = True,
    env: dict | None = None,
    input: str | None = None,
) -> str:
    """`git` in a worker thread, so a service's event loop keeps serving while git works."""
    return await asyncio.to_thread(git, repo, *args, check=check, env=env, input=input)


def is_git_repo(path: Path) -> bool:
    """True when `path` is (the top or inside of) a git working tree or a bare repository."""
    path = Path(path)
    if not path.is_dir():
        return False
    return run_git(path, "rev-parse", "--git-dir").returncode == 0


def default_branch(repo: Path) -> str:
    """The repository's default branch.

    In order: HEAD of a bare repository (mirrors, remotes), what `origin/HEAD` points at (clones), the branch HEAD names (mirrors, and a
    working repository's checked-out branch unless it is one of the pilot's own `repo-pilot/`
    branches), then `main` or `master` when present.
    """
    repo = Path(repo)
    if git(repo, "rev-parse", "--is-bare-repository", check=False) == "true":
        # Mirrors and bare remotes: HEAD is the default branch (refs/remotes may be copied junk).
        bare_head = git(repo, "symbolic-ref", "-q", "--short", "HEAD", check=False)
        if bare_head:
            return bare_head
    remote_head = git(repo, "symbolic-ref", "-q", "--short", "refs/remotes/origin/HEAD", check=False)
    if remote_head:
        return remote_head.removeprefix("origin/")
    head = git(repo, "symbolic-ref", "-q", "--short", "HEAD", check=False)
    if head and not head.startswith("repo-pilot/"):
        return head
    for candidate in ("main", "master"):
        if ref_exists(repo, f"refs/heads/{candidate}"):
            return candidate
    if head:
        return head
    raise GitError(["git", "-C", str(repo), "symbolic-ref", "HEAD"], 1, "cannot tell the default branch")


def ref_exists(repo: Path, ref: str) -> bool:
    """True when `ref` resolves to an object in `repo`."""
    return bool(git(repo, "rev-parse", "-q", "--verify", ref, check=False))


def find_merge(repo: Path, into: str, tip: str) -> str | None:
    """The merge commit on `into`'s first-parent history that brought in `tip`, if any.

    This is how forges tell "already merged" from the repository itself rather than from
    their own bookkeeping, so a merge interrupted before it was recorded is not repeated.
    """
    out = git(
        repo, "rev-list", "--first-parent", "--merges", "--parents", "--max-count=5000", into, check=False
    )
    for line in out.splitlines():
        sha, *parents = line.split()
        if tip in parents[1:]:
            return sha
    return None


def head_sha(repo: Path, ref: str = "HEAD") -> str:
    """The full commit sha `ref` resolves to."""
    return git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
