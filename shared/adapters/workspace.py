"""The Workspace port: a run's working copy, rebuilt from events alone (DESIGN section 4).

Layout under `home`:
- `mirrors/<hash of source>`: a `git clone --mirror` of each repository, fetched on reuse;
- `worktrees/<run id>`: a run's working copy at the base sha with its patch series applied.

A run's working copy is a local clone of the mirror rather than a `git worktree` of it: the
mirror's refs are overwritten by every fetch (`--mirror` maps `refs/*` one to one, with prune),
so run branches living there would be clobbered, and several services building copies of the
same repository would contend for the mirror's ref locks.

No clone hardlinks objects (`--no-hardlinks`): a hardlinked object is one file shared by the
user's repository, the mirror and every working copy, so code under test that rewrote it in a
working copy would rewrite the user's history. Both directories are registered as untrusted with
the git door (shared/adapters/git.py), which sanitises their configuration before any command.

Commits are made with one timestamp for author and committer, and patches are applied with
`git am --committer-date-is-author-date` under the same fixed identity, so rebuilding a run
from its patch series yields the very same commit shas on every machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from shared.adapters.git import (
    GitError,
    default_branch,
    git,
    git_apply_patch,
    git_patch,
    head_sha,
    is_git_repo,
    run_git,
    untrusted_root,
)
from shared.ports.errors import StepError
from shared.ports.workspace import Materialized

_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")


def is_url(source: str) -> bool:
    """True for anything git treats as a remote URL (scheme://… or scp-like user@host:path)."""
    return "://" in source or bool(_SCP_LIKE.match(source))


def _clone_source(source: str) -> str:
    """What to hand `git clone`: URLs as given, local paths made absolute."""
    return source if is_url(source) else str(Path(source).expanduser().resolve())


def mirror_key(source: str) -> str:
    """A stable directory name for a source: the same repository always maps to one mirror."""
    return hashlib.sha256(_clone_source(source).rstrip("/").encode()).hexdigest()[:20]


def _check_local_source(source: str) -> None:
    path = Path(source).expanduser()
    if not path.exists():
        raise StepError(
            f"Repository path does not exist: {source}",
            hint="Pass an existing local repository path or a git URL (https://, ssh://, file://).",
        )
    if not is_git_repo(path):
        raise StepError(
            f"Not a git repository: {source}",
            hint="Run `git init` and commit the code first, or pass the path of a git repository.",
        )
    if git(path, "rev-parse", "--is-bare-repository") == "true":
        return
    top = Path(git(path, "rev-parse", "--show-toplevel")).resolve()
    if top != path.resolve():
        raise StepError(
            f"{source} is inside a git repository but is not its root",
            hint=f"Pass the repository root: {top}",
        )


@contextlib.contextmanager
def _locked(lock_path: Path):
    """An exclusive inter-process lock: services on one host share mirrors safely."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Workspace:
    """Mirrors and per-run working copies under one home directory (the `shared.ports.workspace`
    port; `Materialized` is re-exported from there)."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.mirrors = self.home / "mirrors"
        self.worktrees = self.home / "worktrees"
        for root in (self.mirrors, self.worktrees):
            untrusted_root(root)

    def mirror_path(self, source: str) -> Path:
        return self.mirrors / mirror_key(source)

    def checkout_path(self, run_id: str, source: str) -> Path:
        """Where a run's working copy of `source` lives: `worktrees/<run id>/<the repository's own
        directory name>`, so tools that name a project after its directory see the user's name,
        never an internal one like `run-…-imp5`."""
        return self.worktree_path(run_id) / checkout_name(source)

    def worktree_path(self, run_id: str) -> Path:
        if not re.fullmatch(r"[\w.-]+", run_id) or run_id in {".", ".."}:
            raise ValueError(f"run id not usable as a directory name: {run_id!r}")
        return self.worktrees / run_id

    # -- mirrors -----------------------------------------------------------------------

    async def materialize(self, source: str, ref: str | None = None) -> Materialized:
        """Clone (or fetch into) the mirror of `source` and resolve `ref` (default branch if None).

        Raises StepError with a hint for a missing path, a directory that is not a git
        repository, an unreachable URL, an empty repository or an unknown ref.
        """
        return await asyncio.to_thread(self._materialize, source, ref)

    def _materialize(self, source: str, ref: str | None) -> Materialized:
        if not is_url(source):
            _check_local_source(source)
        mirror = self._sync_mirror(source)
        try:
            branch = default_branch(mirror)
        except GitError:
            branch = ""
        sha = self._resolve(mirror, source, ref or "HEAD")
        return Materialized(source=source, mirror=mirror, base_sha=sha, default_branch=branch, ref=ref)

    def _sync_mirror(self, source: str) -> Path:
        mirror = self.mirror_path(source)
        with _locked(self.mirrors / f"{mirror.name}.lock"):
            try:
                if (mirror / "HEAD").exists():
                    git(mirror, "fetch", "--prune", "--quiet", "origin")
                    _follow_remote_head(mirror)
                else:
                    self._clone_mirror(source, mirror)
            except GitError as exc:
                raise StepError(
                    f"Could not fetch {source}: {exc.stderr.strip() or exc}",
                    hint="Check the URL or path, your network, and that your credentials allow reading it.",
                ) from exc
        return mirror

    def _clone_mirror(self, source: str, mirror: Path) -> None:
        # Clone beside the final place and rename, so a crash never leaves a half mirror behind.
        self.mirrors.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{mirror.name}-", dir=self.mirrors))
        try:
            git(self.mirrors, "clone", "--mirror", "--no-hardlinks", "--quiet", _clone_source(source), str(tmp))
            tmp.rename(mirror)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _resolve(self, mirror: Path, source: str, ref: str) -> str:
        candidates = [ref] if ref == "HEAD" else [ref, f"refs/heads/{ref}", f"refs/tags/{ref}"]
        for candidate in candidates:
            sha = git(mirror, "rev-parse", "-q", "--verify", f"{candidate}^{{commit}}", check=False)
            if sha:
                return sha
        if ref == "HEAD":
            raise StepError(
                f"Repository has no commits: {source}",
                hint="Commit the code first; the pipeline works from a commit.",
            )
        # A sha that no branch or tag reaches is not in a mirror until asked for by name.
        if re.fullmatch(r"[0-9a-fA-F]{7,40}", ref):
            git(mirror, "fetch", "--quiet", "origin", ref, check=False)
            sha = git(mirror, "rev-parse", "-q", "--verify", f"{ref}^{{commit}}", check=False)
            if sha:
                return sha
        raise StepError(
            f"Unknown ref {ref!r} in {source}",
            hint="Pass a branch, tag or commit sha that exists in the repository (or omit the ref "
            "to use the default branch).",
        )

    # -- per-run working copies ----------------------------------------------------------

    async def worktree(
        self,
        run_id: str,
        source: str,
        base_sha: str,
        patches: Sequence[str] = (),
        branch: str | None = None,
    ) -> Path:
        """A fresh working copy for `run_id` at `base_sha`, with each patch applied as one commit.

        `patches` are `git format-patch --stdout` outputs, one commit each, applied in order with
        `git am`, so the run's commit series (and its shas) is reproduced. `branch`, when given,
        is created (or reset) at the result and checked out. Calling it again for the same run
        discards the old copy and builds a clean one. A patch that does not apply raises StepError.
        """
        return await asyncio.to_thread(self._worktree, run_id, source, base_sha, list(patches), branch)

    def _worktree(
        self, run_id: str, source: str, base_sha: str, patches: list[str], branch: str | None
    ) -> Path:
        path = self.checkout_path(run_id, source)
        mirror = self.mirror_path(source)
        if not (mirror / "HEAD").exists() or not _has_commit(mirror, base_sha):
            # Another service (or machine) materialized it; fetching makes this one self-sufficient.
            self._materialize(source, None)
            if not _has_commit(mirror, base_sha):
                self._resolve(mirror, source, base_sha)
        with _locked(self.worktrees / f"{run_id}.lock"):
            shutil.rmtree(self.worktree_path(run_id), ignore_errors=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            git(self.worktrees, "clone", "--quiet", "--no-hardlinks", "--no-checkout", str(mirror), str(path))
            if branch:
                git(path, "checkout", "--quiet", "-B", branch, base_sha)
            else:
                git(path, "checkout", "--quiet", "--detach", base_sha)
            for number, patch in enumerate(patches, start=1):
                _apply_patch(path, patch, number)
        return path

    async def remove(self, run_id: str) -> None:
        """Delete the run's working copy and its lock file (nothing happens when there is none)."""
        await asyncio.to_thread(self._remove, run_id)

    def _remove(self, run_id: str) -> None:
        path = self.worktree_path(run_id)
        lock = self.worktrees / f"{run_id}.lock"
        if not lock.exists() and not path.exists():
            return
        with _locked(lock):
            shutil.rmtree(path, ignore_errors=True)
            # Unlinked while held: a builder waiting on it finds the copy gone and starts afresh.
            lock.unlink(missing_ok=True)


def checkout_name(source: str) -> str:
    """The repository's own name from its path or URL (`/src/tabulate` and
    `https://host/org/tabulate.git` both give `tabulate`); `repo` when none can be told."""
    tail = re.split(r"[/:\\]", source.rstrip("/\\"))[-1].removesuffix(".git").removesuffix(".bundle")
    return tail if re.fullmatch(r"[\w][\w.-]*", tail or "") and tail not in (".", "..") else "repo"


def _follow_remote_head(mirror: Path) -> None:
    """Point the mirror's HEAD where the source's HEAD points now (its default branch may change)."""
    out = git(mirror, "ls-remote", "--symref", "origin", "HEAD", check=False)
    match = re.search(r"^ref: (refs/heads/\S+)\s+HEAD", out, re.MULTILINE)
    if match:
        git(mirror, "symbolic-ref", "HEAD", match.group(1))


def _has_commit(repo: Path, sha: str) -> bool:
    return bool(git(repo, "rev-parse", "-q", "--verify", f"{sha}^{{commit}}", check=False))


def _apply_patch(path: Path, patch: str, number: int) -> None:
    try:
        git_apply_patch(path, "am", "--quiet", "--committer-date-is-author-date", "--no-gpg-sign", patch=patch)
    except GitError as exc:
        git(path, "am", "--abort", check=False)
        raise StepError(
            f"Patch {number} of the run does not apply: {exc.stderr.strip() or exc}",
            hint="The base commit or the patch series changed; rebuild the run from its recorded events.",
        ) from exc


def commit_all(path: Path, message: str) -> str | None:
    """Stage every change in the working copy and commit it; the new sha, or None if nothing changed.

    Author and committer share one timestamp so the commit can be rebuilt byte for byte.
    """
    git(path, "add", "--all")
    if not git(path, "status", "--porcelain", "--untracked-files=no"):
        return None
    stamp = f"{int(time.time())} +0000"
    git(
        path,
        "-c",
        "commit.gpgsign=false",
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        message,
        env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
    )
    return head_sha(path)


def format_patch(path: Path, sha: str) -> str:
    """The commit `sha` as an mbox patch (`git format-patch --stdout`), ready for `git am`."""
    return git_patch(path, "format-patch", "-1", "--stdout", "--binary", sha)


# A standalone checkout for the generator: the agent's shell and the task's tests write it, so it
# shares no object and no configuration with where it came from (no mirror, no worktree).


def checkout_base(source: str, base_commit: str | None, dest: Path) -> str:
    """Clone `source` into `dest` (which must not exist) and check out `base_commit`.

    Returns the full base sha (HEAD of the source when no base commit is known).
    """
    # The agent and the task's tests write this copy: no object shared with `source` (a local
    # clone would hardlink them), and git here reads only a sanitised configuration.
    untrusted_root(dest)
    try:
        git(dest.parent, "clone", "--quiet", "--no-hardlinks", "--no-checkout", source, str(dest))
    except GitError as exc:
        raise StepError(f"cannot clone the base repository {source}: {exc.stderr.strip()}") from None
    ref = base_commit or "HEAD"
    try:
        sha = git(dest, "rev-parse", "--verify", f"{ref}^{{commit}}")
    except GitError:
        if not base_commit:
            raise StepError(f"the base repository {source} has no commits") from None
        # A shallow or stale clone may lack the commit; one fetch by sha is worth a try.
        fetched = run_git(dest, "fetch", "--quiet", "origin", base_commit)
        try:
            sha = git(dest, "rev-parse", "--verify", f"{base_commit}^{{commit}}")
        except GitError:
            why = f" (fetching it: {fetched.stderr.strip()})" if fetched.returncode else ""
            raise StepError(f"base commit {base_commit} is not in {source}{why}",
                            hint="is --repo-path a clone of the task's repository?") from None
    git(dest, "checkout", "--quiet", "--force", "--detach", sha)
    return sha


def diff_against_base(repo: Path, base: str) -> str:
    """Everything changed in the working tree since `base`, new files included (.gitignore honoured)."""
    git(repo, "add", "--all")
    out = git(repo, "diff", "--cached", "--no-color", "--no-ext-diff", "--binary", base)
    return out + "\n" if out else ""


def apply_patch(repo: Path, patch: str) -> str | None:
    """Apply `patch` to the working tree; None on success, else git's reason."""
    try:
        git(repo, "apply", "--whitespace=nowarn", "-", input=patch)
    except GitError as exc:
        return (exc.stderr or exc.stdout).strip() or "git apply failed"
    return None
