"""The base repository checked out at the task's base commit, in a folder of our own."""

from __future__ import annotations

from pathlib import Path

from services.generator.task import Task
from shared.adapters.git import GitError, git, run_git, untrusted_root
from shared.ports.errors import StepError


def repo_source(task: Task, repo_path: Path | str | None) -> str:
    """Where the base repository comes from: `--repo-path`, else the URL in setup.sh."""
    if repo_path:
        path = Path(repo_path).expanduser().resolve()
        if not path.exists():
            raise StepError(f"--repo-path {path} does not exist")
        return str(path)
    if task.repo_url:
        return task.repo_url
    raise StepError(f"no base repository for {task.path}: setup.sh names none",
                    hint="pass --repo-path with a local clone")


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
