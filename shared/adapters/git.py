"""Running git: the one door every git command goes through (workspace, forges, analyzers,
engines, services, the generator).

Every call is isolated from the user's git setup: no global or system config, no hooks, a fixed
identity (so commits made by the pipeline are attributable and reproducible, and a user's
`core.hooksPath` or `merge.conflictStyle` cannot change a result), and it never prompts for
credentials (a prompt would hang a service forever).

Git runs programs named in its configuration (`core.fsmonitor`, `diff.external`, filter and diff
drivers, `include.path`…). Two rules keep code under test from using that to run on the host
(docs/security.md lists every key and how it is neutralised):
- every fixed-name key that runs a program is held to a harmless value for every command
  (`NEUTRAL_CONFIG`, passed through the environment's config, which has the last word over the
  repository's and is inherited by the git processes git starts);
- in repositories code under test could have written (the workspace's working copies and mirrors,
  registered with `untrusted_root`), git reads no repository configuration but what
  `sanitise_repository` keeps (an allow-list of plain data keys), and its repository is named
  explicitly (`GIT_DIR`), so a `.git` file or nested repository planted in the tree is not used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

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


# Fixed-name configuration keys that make git run a program, sign, or recurse into nested
# repositories, and the value each is held to for every command (docs/security.md).
NEUTRAL_CONFIG: dict[str, str] = {
    "core.hooksPath": os.devnull,
    "core.fsmonitor": "false",
    "core.pager": "cat",
    "core.editor": ":",
    "sequence.editor": ":",
    "core.askPass": "",
    "core.sshCommand": "ssh -o BatchMode=yes",
    "credential.helper": "",  # an empty helper empties the list the repository's config built
    "gpg.program": "false",
    "gpg.ssh.program": "false",
    "gpg.x509.program": "false",
    "commit.gpgSign": "false",
    "tag.gpgSign": "false",
    "protocol.ext.allow": "never",
    # A nested repository planted in a working copy: git never starts a process inside it.
    "diff.ignoreSubmodules": "all",
    "submodule.recurse": "false",
    "status.submoduleSummary": "false",
    "fetch.recurseSubmodules": "false",
    # Objects fetched or pushed (into the user's repository, too) are checked: a rewritten object
    # is refused instead of landing.
    "transfer.fsckObjects": "true",
}
# What the parent's environment may carry that would point git elsewhere or run a program.
_DROPPED_ENV = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_EXTERNAL_DIFF",
    "GIT_PROXY_COMMAND", "GIT_SSH", "GIT_EXEC_PATH", "GIT_TEMPLATE_DIR",
)


def git_env(extra: dict | None = None) -> dict[str, str]:
    """The environment git runs with: the caller's, plus the pipeline identity, no prompts, and
    every key of NEUTRAL_CONFIG held to its harmless value.

    Values in `extra` win, so a caller can pass its own author or committer.
    """
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(
        {
            "GIT_AUTHOR_NAME": IDENTITY_NAME,
            "GIT_AUTHOR_EMAIL": IDENTITY_EMAIL,
            "GIT_COMMITTER_NAME": IDENTITY_NAME,
            "GIT_COMMITTER_EMAIL": IDENTITY_EMAIL,
            "GIT_TERMINAL_PROMPT": "0",
            # A user's global config (hooks, signing, templates, merge style) must not change what we
            # produce: no system or global file.
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_PAGER": "cat",
            "GIT_EDITOR": ":",
            "GIT_SEQUENCE_EDITOR": ":",
            "GIT_SSH_COMMAND": env.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
            "GIT_CONFIG_COUNT": str(len(NEUTRAL_CONFIG)),
        }
    )
    for i, (key, value) in enumerate(NEUTRAL_CONFIG.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    if extra:
        env.update(extra)
    return env


# -- repositories code under test may have written ---------------------------------------------

_UNTRUSTED: set[Path] = set()
_CLEAN: dict[Path, tuple] = {}  # config file -> (inode, size, mtime) when last found clean
_CLEAN_LOCK = threading.Lock()
# The only repository configuration git may read in an untrusted repository: what `git clone`
# and `git clone --mirror` write. Anything else (a command, an include, a driver) is removed.
ALLOWED_CONFIG = re.compile(
    r"core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase|precomposeunicode|symlinks)"
    r"|extensions\.objectformat"
    r"|remote\..+\.(url|fetch|mirror)"
    r"|branch\..+\.(remote|merge)"
)
# Files in a git dir that git reads as configuration and that our clones never have. (Attributes,
# `info/attributes` included, only name drivers; a driver runs nothing unless configuration defines it.)
_FOREIGN_GIT_FILES = ("config.worktree", "commondir", "objects/info/alternates", "objects/info/http-alternates")


class GitTampered(GitError):
    """An untrusted repository's git dir is not a plain directory any more (a planted `.git` file
    or symlink): git is not run there."""

    def __init__(self, path: Path, why: str):
        super().__init__(["git", "-C", str(path)], 128, f"refused: {why}")


def untrusted_root(path: Path) -> None:
    """Mark `path` as a directory whose repositories code under test may have written (the
    workspace's working copies and mirrors): every git command in a repository below it runs
    on a sanitised configuration with its repository named explicitly."""
    _UNTRUSTED.add(Path(path).resolve())


def _untrusted_top(repo: Path) -> tuple[Path, Path] | None:
    """(top, git dir) of the outermost repository holding `repo` below an untrusted root, if any.

    The outermost, so a nested `.git` planted in a subdirectory is never the one used."""
    try:
        resolved = repo.resolve()
    except OSError:
        return None
    for root in _UNTRUSTED:
        if resolved != root and root not in resolved.parents:
            continue
        for top in [*reversed(resolved.parents), resolved]:
            if top != root and root not in top.parents:
                continue
            dot = top / ".git"
            if os.path.lexists(dot):
                if dot.is_symlink() or not dot.is_dir():
                    raise GitTampered(top, f"{dot} is not a directory (planted by code under test?)")
                return top, dot
            if (top / "HEAD").is_file() and (top / "objects").is_dir() and top != root:
                return top, top  # a bare mirror
    return None


def sanitise_repository(git_dir: Path) -> list[str]:
    """Keep only ALLOWED_CONFIG in `git_dir`'s config and remove configuration files our clones
    never have; what was removed (empty when the repository was clean)."""
    removed: list[str] = []
    for rel in _FOREIGN_GIT_FILES:
        path = git_dir / rel
        if os.path.lexists(path):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(rel)
    config = git_dir / "config"
    try:
        st = os.lstat(config)
    except FileNotFoundError:
        return removed
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _CLEAN_LOCK:
        if _CLEAN.get(config) == stamp and not removed:
            return removed
    if config.is_symlink():
        config.unlink()
        removed.append("config (a symlink)")
        entries = []
    else:
        entries = _config_entries(config)
    kept = [(k, v) for k, v in entries if ALLOWED_CONFIG.fullmatch(k)]
    removed += [f"{k}={v}" for k, v in entries if not ALLOWED_CONFIG.fullmatch(k)]
    if removed:
        tmp = config.with_name("config.repo-pilot")
        tmp.unlink(missing_ok=True)
        for key, value in kept:
            _plain_git("config", "--file", str(tmp), "--add", key, value)
        if not kept:
            tmp.write_text("")
        os.replace(tmp, config)
        log.warning("git configuration in %s was changed by code under test; removed: %s",
                    git_dir, "; ".join(removed)[:500])
        st = os.lstat(config)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _CLEAN_LOCK:
        _CLEAN[config] = stamp
    return removed


def _config_entries(config: Path) -> list[tuple[str, str]]:
    # `--file` reads that file alone: includes are not followed, and `git config` runs nothing.
    out = _plain_git("config", "--file", str(config), "--list", "--null")
    entries = []
    for item in out.split("\0"):
        if item:
            key, _, value = item.partition("\n")
            entries.append((key, value))
    return entries


def _plain_git(*args: str) -> str:
    proc = subprocess.run(["git", *args], check=False, capture_output=True, text=True, errors="replace",
                          env=git_env(), stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise GitError(["git", *args], proc.returncode, proc.stderr, proc.stdout)
    return proc.stdout


def sanitise_after_code_ran(repo: Path) -> list[str]:
    """Sanitise the untrusted repository holding `repo` now, right after code under test ran in it
    (every git command does so first anyway): a plant is removed and reported (the warning above)
    even when no git command follows, as for a copy removed after its suite ran. What was
    removed; GitTampered when its `.git` is no longer a directory."""
    found = _untrusted_top(Path(repo))
    return sanitise_repository(found[1]) if found is not None else []


def _confined(repo: Path) -> dict[str, str]:
    """The environment that names an untrusted repository explicitly, after sanitising it."""
    found = _untrusted_top(Path(repo))
    if found is None:
        return {}
    top, git_dir = found
    sanitise_repository(git_dir)
    if git_dir == top:
        return {"GIT_DIR": str(git_dir)}
    return {"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(top)}


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
    confined = _confined(Path(repo))
    with _span(args):
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            check=False,
            capture_output=True,
            text=text,
            errors="replace" if text else None,
            env=git_env({**(env or {}), **confined}),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=timeout,
            # Its own session: Ctrl-C at the terminal interrupts Repo Pilot, which releases the step
            # for redelivery, instead of killing git mid-merge and being recorded as a failed step.
            start_new_session=True,
        )


def _span(args: tuple[str, ...]) -> contextlib.AbstractContextManager:
    """The telemetry of one git command (`telemetry.git_span`). Until OpenTelemetry is loaded no
    tracer provider is installed and no span is current, so nothing could record the command:
    a one-shot process (a scan) then does not load telemetry (~20 ms of imports) for its git."""
    if "opentelemetry.trace" not in sys.modules:
        return contextlib.nullcontext()
    from shared.common.telemetry import git_span

    return git_span(args)


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
    import asyncio  # here: a one-shot command (a scan) never loads asyncio (~25 ms) for git

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
