"""Pushing a run's branch to a forge, shared by every forge (local, remote, GitHub)."""

from __future__ import annotations

from pathlib import Path

from shared.adapters.git import GitError, git, head_sha
from shared.common.redaction import redact
from shared.ports.errors import StepError


def remote_sha(repo: Path, remote: str, branch: str) -> str | None:
    """The commit `branch` points at on `remote`, or None when the remote has no such branch."""
    out = git(repo, "ls-remote", remote, f"refs/heads/{branch}")
    return out.split()[0] if out else None


def publish_branch(repo: Path, remote: str, branch: str) -> bool:
    """Push `branch` from `repo` to `remote`; False when the remote already has that commit.

    The branch belongs to the run, so a rebuilt branch replaces what was pushed before (force).
    """
    try:
        local = head_sha(repo, f"refs/heads/{branch}")
        if remote_sha(repo, remote, branch) == local:
            return False
        git(repo, "push", "--quiet", "--force", remote, f"refs/heads/{branch}:refs/heads/{branch}")
        return True
    except GitError as exc:
        raise StepError(
            f"Could not publish branch {branch!r}: {redact(str(exc))}",
            hint="Check that the branch exists in the working copy and the forge accepts pushes.",
        ) from None
