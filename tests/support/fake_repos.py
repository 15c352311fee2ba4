"""Repositories in memory for the handler unit tests: the Workspace and Changes ports without git.

A commit is a snapshot of files ({path: content}) with a parent and a message; its sha is the
hash of those, so rebuilding a series gives the same shas (as `git am
--committer-date-is-author-date` does). A working copy is a real directory (engines edit files in
it) whose HEAD and branch are kept here. A patch names each file it touches with its content
before and after: it applies only where every "before" still holds (whole files: stricter than
git's hunks, which the contract suites allow).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.events.run import ProjectChecks
from shared.ports.changes import Drafted, PatchConflict
from shared.ports.engine import Implementation
from shared.ports.errors import ChangeRejectedError, StepError
from shared.ports.workspace import Materialized

Files = dict[str, str]
Delta = dict[str, list]  # path -> [content before or None, content after or None]


@dataclass(frozen=True)
class Commit:
    parent: str | None
    message: str
    files: Files


@dataclass
class Copy:
    head: str
    branch: str | None


class Repos:
    """Every commit ever made, shared by the fake workspace and the fake changes of one test."""

    def __init__(self) -> None:
        self.commits: dict[str, Commit] = {}
        self.copies: dict[Path, Copy] = {}

    def commit(self, parent: str | None, message: str, files: Files) -> str:
        blob = json.dumps([parent, message, sorted(files.items())]).encode()
        sha = hashlib.sha1(blob).hexdigest()  # noqa: S324 - a name, as git's, not a secret
        self.commits[sha] = Commit(parent, message, dict(files))
        return sha

    def copy_of(self, path: Path) -> Copy:
        return self.copies[Path(path).resolve()]

    def resolve(self, path: Path, name: str) -> str | None:
        """A commit sha for `name` (HEAD, a sha) in the copy at `path`; None when there is none."""
        if name == "HEAD":
            return self.copy_of(path).head
        return name if name in self.commits else None


def read_tree(path: Path) -> Files:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(Path(path).rglob("*")) if p.is_file()}


def write_tree(path: Path, files: Files) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    for rel, content in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(content)


def delta(before: Files, after: Files) -> Delta:
    return {rel: [before.get(rel), after.get(rel)] for rel in sorted({*before, *after})
            if before.get(rel) != after.get(rel)}


def applied(files: Files, change: Delta, *, three_way: bool = False) -> Files | None:
    """`files` with `change` made, or None when a "before" no longer holds (`three_way`: a file
    that already has the "after" is fine, as git's three-way merge finds it already applied)."""
    if any(files.get(rel) != old and not (three_way and files.get(rel) == new)
           for rel, (old, new) in change.items()):
        return None
    out = dict(files)
    for rel, (_old, new) in change.items():
        if new is None:
            out.pop(rel, None)
        else:
            out[rel] = new
    return out


def mailbox(sha: str, commit: Commit, change: Delta) -> str:
    """A commit as a patch: a mailbox header (as format-patch writes) and the change as JSON."""
    subject = commit.message.splitlines()[0] if commit.message else ""
    return f"From {sha}\nSubject: [PATCH] {subject}\n\n" + json.dumps({"message": commit.message, "files": change})


def parse_patch(patch: str) -> tuple[str, Delta]:
    body = json.loads(patch.split("\n\n", 1)[1] if patch.startswith("From ") else patch)
    return body.get("message", ""), body["files"]


class FakeWorkspace:
    """Repositories held as {source: {path: content}}; working copies are directories under
    `root`. `live` is what has not been removed yet, `made` every copy asked for."""

    def __init__(self, root: Path, repos: dict[str, Files], store: Repos | None = None):
        self.root = Path(root)
        self.repos = repos
        self.store = store or Repos()
        self.live: set[str] = set()
        self.made: list[str] = []

    def _base(self, source: str) -> str:
        if source not in self.repos:
            raise StepError(f"Repository path does not exist: {source}", hint="Pass an existing repository.")
        return self.store.commit(None, "initial", self.repos[source])

    async def materialize(self, source: str, ref: str | None = None) -> Materialized:
        base = self._base(source)
        if ref not in (None, "main", "HEAD", base):
            raise StepError(f"Unknown ref {ref!r} in {source}", hint="Pass a branch, tag or sha.")
        return Materialized(source=source, mirror=self.root / "mirrors" / base[:12], base_sha=base,
                            default_branch="main", ref=ref)

    async def worktree(
        self, run_id: str, source: str, base_sha: str, patches: Sequence[str] = (), branch: str | None = None
    ) -> Path:
        self._base(source)
        path = (self.root / "worktrees" / run_id).resolve()
        self.live.add(run_id)
        self.made.append(run_id)
        head = base_sha
        files = self.store.commits[head].files
        for number, patch in enumerate(patches, 1):
            message, change = parse_patch(patch)
            files = applied(files, change)
            if files is None:
                raise StepError(f"Patch {number} of the run does not apply",
                                hint="The base commit or the patch series changed; rebuild the run from its recorded events.")
            head = self.store.commit(head, message, files)
        write_tree(path, files)
        self.store.copies[path] = Copy(head, branch)
        return path

    async def remove(self, run_id: str) -> None:
        path = (self.root / "worktrees" / run_id).resolve()
        shutil.rmtree(path, ignore_errors=True)
        self.store.copies.pop(path, None)
        self.live.discard(run_id)


class FakeChanges:
    """The Changes port over `Repos`, with the project's own checks scripted (no ruff, no
    pre-commit): `reject(path)` returns a reason to refuse a draft, or None. `gated` lists the
    copies checked."""

    def __init__(self, repos: Repos | None = None, reject: Callable[[Path], str | None] = lambda path: None):
        self.repos = repos or Repos()
        self.reject = reject
        self.gated: list[str] = []

    def _committed(self, path: Path) -> Files:
        return self.repos.commits[self.repos.copy_of(path).head].files

    async def draft(self, path: Path, implement: Callable[[], Awaitable[Implementation]]) -> Drafted:
        before = self._committed(path)
        done = await implement()
        checks = await self.gate(path)
        change = delta(before, read_tree(path))
        return Drafted(json.dumps({"files": change}) if change else "", done, checks)

    async def gate(self, path: Path) -> ProjectChecks | None:
        self.gated.append(Path(path).name)
        if reason := self.reject(Path(path)):
            raise ChangeRejectedError(reason)
        return None  # no check ran

    async def head(self, path: Path) -> str:
        return self.repos.copy_of(path).head

    async def apply(self, path: Path, patch: str, *, three_way: bool = False) -> None:
        _message, change = parse_patch(patch)
        files = applied(read_tree(path), change, three_way=three_way)
        if files is None:
            write_tree(Path(path), self._committed(path))  # clean again, as after a failed git apply
            clashes = sorted(rel for rel, (old, _new) in change.items() if read_tree(path).get(rel) != old)
            raise PatchConflict("".join(f"error: patch failed: {rel}\nerror: {rel}: patch does not apply\n"
                                        for rel in clashes))
        write_tree(Path(path), files)

    async def commit(self, path: Path, message: str) -> str | None:
        files = read_tree(path)
        copy = self.repos.copy_of(path)
        if files == self._committed(path):
            return None
        copy.head = self.repos.commit(copy.head, message, files)
        return copy.head

    async def patch_of(self, path: Path, sha: str) -> tuple[str, list[str]]:
        commit = self.repos.commits[sha]
        parent = self.repos.commits[commit.parent].files if commit.parent else {}
        change = delta(parent, commit.files)
        return mailbox(sha, commit, change), sorted(change)
