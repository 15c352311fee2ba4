"""The Forge port: where a run's branch goes, and how it is merged (DESIGN section 4).

- `LocalForge`: the branch is pushed into the target repository itself and merged there with
  `--no-ff` into its default branch.
- `RemoteForge`: any git remote; the merge is made in a temporary clone and pushed.
- `GitHubForge`: push over HTTPS with a token, pull requests through the REST API.

Every action checks before it acts, so a redelivered event never pushes, opens or merges
twice. The local and remote forges keep their "merge requests" in a small JSON book, and
they tell "already merged" from the repository's own history (a merge commit whose second
parent is the branch tip), so a merge interrupted before it was written down is not repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path

from shared.adapters.forge_github import GitHubForge, github_repo_of
from shared.adapters.forge_push import publish_branch, remote_sha
from shared.adapters.git import GitError, default_branch, find_merge, git, head_sha
from shared.common.redaction import redact
from shared.common.settings import Settings
from shared.ports.errors import StepError
from shared.ports.forge import Forge, MergeRequest

__all__ = ["Forge", "LocalForge", "MergeRequest", "RemoteForge", "RequestBook", "make_forge"]

# ls-remote needs no repository; it still needs a directory to run in.
_ANYWHERE = Path(tempfile.gettempdir())


# -- the request book (local and remote forges) -----------------------------------------------


class RequestBook:
    """Merge requests in one JSON file, read and written under an exclusive file lock."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @contextlib.contextmanager
    def transaction(self):
        """Yields the list of request dicts; whatever it holds on exit is written back."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            requests = json.loads(self.path.read_text())["requests"] if self.path.exists() else []
            yield requests
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"requests": requests}, indent=2))
            tmp.replace(self.path)

    def read(self) -> list[dict]:
        with self.transaction() as requests:
            return list(requests)


def _as_request(record: dict) -> MergeRequest:
    fields = MergeRequest.__dataclass_fields__
    return MergeRequest(**{k: v for k, v in record.items() if k in fields})


def _latest(requests: list[dict], branch: str, states=("open", "merged", "closed")) -> dict | None:
    matching = [r for r in requests if r["branch"] == branch and r["state"] in states]
    return matching[-1] if matching else None


class _BookForge(ABC):
    """What the local and remote forges share: requests in a book, merges checked against history.

    A subclass says where requests point (`_url`), which branch they merge into (`_base_branch`)
    and how a merge is made (`_merge_sync`)."""

    name = "book"
    remote: str  # what git pushes to and lists: a path or URL
    book: RequestBook
    base: str | None

    @abstractmethod
    def _url(self, number: int) -> str: ...

    @abstractmethod
    def _base_branch(self) -> str: ...

    @abstractmethod
    def _merge_sync(self, branch: str, tip: str, base: str, message: str) -> str:
        """Merge `tip` of `branch` into `base` with `message`; the merge sha (an earlier merge's
        sha when it is already merged)."""

    async def publish(self, repo: Path, branch: str) -> bool:
        """Push the branch; False when the forge already has it at this commit."""
        return await asyncio.to_thread(publish_branch, Path(repo), self.remote, branch)

    async def already_has(self, repo: Path, branch: str) -> str | None:
        """The base branch's name when it already holds every change of `branch` (checked out in
        the working copy `repo`): merging would change no file. None when it would, or when that
        cannot be told (a conflict, a base that cannot be fetched)."""
        return await asyncio.to_thread(self._already_has_sync, Path(repo), branch)

    def _already_has_sync(self, repo: Path, branch: str) -> str | None:
        base = self.base or self._base_branch()
        try:
            git(repo, "fetch", "--quiet", "--no-tags", self.remote, f"refs/heads/{base}")
            merged_tree = git(repo, "merge-tree", "--write-tree", "FETCH_HEAD", branch).splitlines()[0]
        except GitError:  # conflicts (exit 1) or no such base: not "already there"
            return None
        return base if merged_tree == git(repo, "rev-parse", "FETCH_HEAD^{tree}") else None

    async def find_request(self, branch: str) -> MergeRequest | None:
        """The newest request for `branch`, or None."""
        record = _latest(await asyncio.to_thread(self.book.read), branch)
        return _as_request(record) if record else None

    async def open_request(self, repo: Path, branch: str, title: str, body: str) -> MergeRequest:
        """The open (or merged) request for `branch`, created only when there is none."""
        return await asyncio.to_thread(self._open_sync, Path(repo), branch, title, body)

    def _open_sync(self, repo: Path, branch: str, title: str, body: str) -> MergeRequest:
        with self.book.transaction() as requests:
            existing = _latest(requests, branch, states=("open", "merged"))
            if existing:
                return _as_request(existing)
            if not remote_sha(repo, self.remote, branch):
                raise StepError(
                    f"Branch {branch!r} is not on the forge yet",
                    hint="Publish the branch before opening a merge request for it.",
                )
            number = max((int(r["id"]) for r in requests), default=0) + 1
            record = {
                "id": str(number),
                "url": self._url(number),
                "branch": branch,
                "state": "open",
                "merge_sha": None,
                "title": title,
                "base": self.base or self._base_branch(),
                "body": body,
                "opened_at": datetime.now(UTC).isoformat(),
            }
            requests.append(record)
            return _as_request(record)

    async def merge(self, request: MergeRequest) -> str:
        """Merge the request's branch with `--no-ff`; an already merged request returns its sha."""
        return await asyncio.to_thread(self._merge_request_sync, request)

    def _merge_request_sync(self, request: MergeRequest) -> str:
        # The book's lock is held throughout, so concurrent mergers on this host merge once.
        with self.book.transaction() as requests:
            record = next((r for r in requests if r["id"] == str(request.id)), None)
            if record is None:
                raise StepError(
                    f"No merge request #{request.id} on this forge", hint="Open the request first."
                )
            if record["state"] == "merged":
                return record["merge_sha"]
            tip = remote_sha(_ANYWHERE, self.remote, record["branch"])
            if tip is None:
                raise StepError(
                    f"Branch {record['branch']!r} is gone from the forge", hint="Publish it again."
                )
            message = (
                f"Merge branch '{record['branch']}' (Repo Pilot request #{record['id']})\n\n{record['title']}"
            )
            sha = self._merge_sync(record["branch"], tip, record["base"], message)
            record.update(state="merged", merge_sha=sha, merged_at=datetime.now(UTC).isoformat())
            return sha


def _merge_in(work: Path, tip: str, message: str) -> str:
    """`git merge --no-ff` of `tip` in the working tree `work`; conflicts abort and raise StepError."""
    try:
        git(work, "-c", "commit.gpgsign=false", "merge", "--no-ff", "--no-edit", "-m", message, tip)
    except GitError as exc:
        git(work, "merge", "--abort", check=False)
        raise StepError(
            f"The branch does not merge cleanly: {exc.stderr.strip() or exc.stdout.strip()}",
            hint="Resolve the conflicts by hand, or run the pipeline again on the current default branch.",
        ) from None
    return head_sha(work)


def _already_merged(repo: Path, base_ref: str, tip: str) -> str | None:
    found = find_merge(repo, base_ref, tip)
    if found:
        return found
    # Someone fast-forwarded it by hand: the branch is in, and its tip is what merged it.
    return tip if _is_ancestor(repo, tip, base_ref) else None


def _is_ancestor(repo: Path, a: str, b: str) -> bool:
    try:
        git(repo, "merge-base", "--is-ancestor", a, b)
        return True
    except GitError:
        return False


# -- local ------------------------------------------------------------------------------------------


class LocalForge(_BookForge):
    """The target repository itself: branch pushed into it, merged into its default branch.

    Requests live in `<target's git dir>/repo-pilot/requests.json`. When the default branch is
    checked out in the target, the merge happens there (and is refused while tracked files have
    uncommitted changes); otherwise it is made in a temporary worktree and the branch ref moved.
    """

    name = "local"

    def __init__(self, target: Path, base: str | None = None):
        self.target = Path(target).resolve()
        self.remote = str(self.target)
        self.base = base
        git_dir = Path(git(self.target, "rev-parse", "--path-format=absolute", "--git-common-dir"))
        self.book = RequestBook(git_dir / "repo-pilot" / "requests.json")

    def _url(self, number: int) -> str:
        return f"{self.target.as_uri()}#request-{number}"

    def _base_branch(self) -> str:
        return default_branch(self.target)

    def _merge_sync(self, branch: str, tip: str, base: str, message: str) -> str:
        base_ref = f"refs/heads/{base}"
        done = _already_merged(self.target, base_ref, tip)
        if done:
            return done
        checked_out = git(self.target, "symbolic-ref", "-q", "HEAD", check=False) == base_ref
        bare = git(self.target, "rev-parse", "--is-bare-repository") == "true"
        if checked_out and not bare:
            if git(self.target, "status", "--porcelain", "--untracked-files=no"):
                raise StepError(
                    f"The target repository {self.target} has uncommitted changes on {base!r}",
                    hint="Commit or stash them, then merge again; the pilot will not merge over your work.",
                )
            return _merge_in(self.target, tip, message)
        old = head_sha(self.target, base_ref)
        tmp = Path(tempfile.mkdtemp(prefix="repo-pilot-merge-"))
        try:
            git(self.target, "worktree", "add", "--quiet", "--detach", str(tmp / "wt"), old)
            sha = _merge_in(tmp / "wt", tip, message)
            git(self.target, "update-ref", "-m", f"repo-pilot: merge {branch}", base_ref, sha, old)
            return sha
        finally:
            git(self.target, "worktree", "remove", "--force", str(tmp / "wt"), check=False)
            git(self.target, "worktree", "prune", check=False)
            shutil.rmtree(tmp, ignore_errors=True)


# -- any git remote ------------------------------------------------------------------------------


class RemoteForge(_BookForge):
    """Any git remote (path, file://, https, ssh): push, and merge in a temporary clone.

    Requests live in `state_dir/<hash of the url>/requests.json` on this host; whether a branch
    is merged is read from the remote's history, so another host never merges it a second time.
    """

    name = "remote"

    def __init__(self, url: str, state_dir: Path, base: str | None = None):
        self.remote = url
        self.base = base
        key = hashlib.sha256(url.encode()).hexdigest()[:20]
        self.book = RequestBook(Path(state_dir) / key / "requests.json")

    def _url(self, number: int) -> str:
        return f"{redact(self.remote)}#request-{number}"

    def _base_branch(self) -> str:
        out = git(_ANYWHERE, "ls-remote", "--symref", self.remote, "HEAD", check=False)
        match = re.search(r"^ref: refs/heads/(\S+)\s+HEAD", out, re.MULTILINE)
        return match.group(1) if match else "main"

    def _merge_sync(self, branch: str, tip: str, base: str, message: str) -> str:
        tmp = Path(tempfile.mkdtemp(prefix="repo-pilot-merge-"))
        try:
            work = tmp / "clone"
            try:
                git(tmp, "clone", "--quiet", "--branch", base, self.remote, str(work))
                git(work, "fetch", "--quiet", "origin", f"refs/heads/{branch}")
            except GitError as exc:
                raise StepError(
                    f"Could not fetch from the forge: {redact(str(exc))}", hint="Check the remote."
                ) from None
            done = _already_merged(work, "HEAD", tip)
            if done:
                return done
            sha = _merge_in(work, tip, message)
            try:
                git(work, "push", "--quiet", "origin", f"HEAD:refs/heads/{base}")
            except GitError as exc:
                raise StepError(
                    f"Could not push the merge to {base!r}: {redact(str(exc))}",
                    hint="The default branch moved meanwhile or pushes are refused; merge again.",
                ) from None
            return sha
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# -- GitHub --------------------------------------------------------------------------------------


def make_forge(kind: str, target: Path | str, settings: Settings) -> Forge:
    """The forge for a run: `local` (the target repository), `remote` (target is a git URL or
    path to push to) or `github` (target is a GitHub URL or a clone of one; needs GITHUB_TOKEN)."""
    if kind == "local":
        return LocalForge(Path(target))
    if kind == "remote":
        return RemoteForge(str(target), state_dir=Path(settings.home) / "forge")
    if kind == "github":
        token = settings.github_token
        if not token:
            raise StepError(
                "The GitHub forge needs a token", hint="Set GITHUB_TOKEN (contents + pull requests: write)."
            )
        repo = github_repo_of(target)
        if not repo:
            raise StepError(f"Cannot tell the GitHub repository of {target}", hint="Pass a github.com URL.")
        api_url = getattr(settings, "github_api_url", None) or "https://api.github.com"
        return GitHubForge(token, repo, api_url=api_url, push_url=getattr(settings, "github_push_url", None))
    raise ValueError(f"unknown forge {kind!r} (local, remote, github)")
