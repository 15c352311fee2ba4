"""What a user may ask for: validating a pipeline request, appending it.

Shared by the CLI and the HTTP gateway so both refuse the same bad requests with the same
words. Validation raises ValueError with a message meant for the user; each face turns it into
its own error (an exit code, a 400).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shared.common.settings import Settings
from shared.events import CATEGORIES, PipelineRequested, make_event, new_run_stream

ENGINES = ("rules", "llm")
FORGES = ("local", "remote", "github")
# Bounds on what a user may send, checked before anything touches the disk or the log.
MAX_REPO_CHARS = 4096  # PATH_MAX on Linux; longer URLs are not real repositories either
MAX_REF_CHARS = 255  # git refuses longer ref names on most filesystems
MAX_CATEGORIES_CHARS = 256


def check_lengths(repo: str, categories: str | Sequence[str], ref: str | None) -> None:
    """ValueError naming the field when an input is longer than any real one could be."""
    cats = categories if isinstance(categories, str) else ",".join(str(c) for c in categories)
    for name, value, limit in (("repo", repo, MAX_REPO_CHARS), ("ref", ref or "", MAX_REF_CHARS),
                               ("categories", cats, MAX_CATEGORIES_CHARS)):
        if len(value) > limit:
            raise ValueError(f"{name} is {len(value):,} characters long; at most {limit:,} are accepted")


def looks_remote(repo: str) -> bool:
    """A git URL (scheme://… or scp-like git@host:…) rather than a local path."""
    return "://" in repo or repo.startswith("git@")


ALLOWED_SCHEMES = ("https", "ssh")


def check_ref(ref: str | None) -> None:
    """ValueError unless `ref` is a valid git ref name (branch, tag, or sha) that no git command
    could take for an option."""
    import re

    if ref is None:
        return
    bad = (not ref or ref.startswith(("-", "/")) or ref.endswith((".", "/", ".lock")) or ".." in ref
           or "@{" in ref or "//" in ref or ref == "@" or re.search(r"[\x00-\x20\x7f~^:?*\[\\]", ref)
           or any(part.startswith(".") for part in ref.split("/")))
    if bad:
        raise ValueError(f"ref {ref[:80]!r} is not a valid git ref name (a branch, tag or commit sha)")


def check_remote(repo: str, *, allow_local: bool, allow_private: bool, resolve=None) -> None:
    """ValueError unless `repo` is what a gateway may fetch: an https or ssh URL (or scp-like
    `user@host:path`) of a public host; a local path only with `allow_local`, a loopback or
    private host only with `allow_private`. `resolve(host)` gives the host's addresses
    (default: DNS), so a name pointing at 127.0.0.1 is refused like the address itself."""
    import ipaddress
    import re
    from urllib.parse import urlsplit

    scp = re.fullmatch(r"[A-Za-z0-9._-]+@([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?!/?/)[^\s]+", repo)
    if not looks_remote(repo) and not scp:
        if allow_local:
            return
        raise ValueError("local repository paths are not accepted by this gateway; give an https or ssh URL "
                         "(or start it with REPO_PILOT_GATEWAY_LOCAL_REPOS=1)")
    if scp:
        host = scp.group(1)
    else:
        parts = urlsplit(repo)
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            raise ValueError(f"URL scheme {parts.scheme!r} is not accepted; give an https or ssh URL")
        try:
            host = parts.hostname
        except ValueError:
            host = None
        if not host:
            raise ValueError("the URL names no host; give an https or ssh URL")
    if allow_private:
        return
    host = host.strip("[]")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a) for a in (resolve or _resolve)(host)]
        except OSError as exc:
            raise ValueError(f"cannot resolve host {host!r}: {exc.strerror or exc}") from None
    if not addresses or any(not a.is_global for a in addresses):
        raise ValueError(f"host {host!r} is a local or private address; this gateway fetches only from public "
                         "hosts (REPO_PILOT_GATEWAY_PRIVATE_HOSTS=1 allows them)")


def _resolve(host: str) -> list[str]:
    import socket

    return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})


def refuse_url_credentials(repo: str) -> str:
    """`repo` unchanged, or ValueError when it is a URL carrying a password or token.

    A token in the URL would be stored in PipelineRequested (events are never edited), shown in
    logs and failure messages, and handed to every service. A user name alone is kept.
    """
    from urllib.parse import urlsplit

    if "://" not in repo:
        return repo
    parts = urlsplit(repo)
    if parts.password is None:
        return repo
    shown = parts._replace(netloc=f"{parts.username}:***@{parts.hostname}"
                           + (f":{parts.port}" if parts.port else "")).geturl()
    raise ValueError(
        f"{shown}: the URL carries a password or token, which would be stored in the run's event log. "
        "Give the URL without it and let git authenticate: an SSH URL (git@host:owner/repo.git) with your "
        "SSH agent, or a mirror you cloned yourself (pass its path)."
    )


def validate_request(
    repo: str,
    categories: str | Sequence[str],
    threshold: float | None,
    engine: str | None,
    settings: Settings,
    ref: str | None = None,
    forge: str = "local",
) -> PipelineRequested:
    """The PipelineRequested a user asked for, or ValueError saying what is wrong.

    A local path must be an existing git repository (it becomes absolute); `categories` is a
    comma-separated string or a list; defaults (threshold, engine) come from `settings`.
    """
    from shared.adapters.git import is_git_repo

    check_lengths(repo or "", categories, ref)
    check_ref(ref)
    if not repo or not repo.strip():
        raise ValueError("repo is empty: give the path of a git repository or a git URL.")
    repo = refuse_url_credentials(repo)
    if not looks_remote(repo):
        path = Path(repo).expanduser().resolve()
        if not path.exists():
            raise ValueError(f"{repo}: no such directory. Give the path of a git repository or a git URL.")
        if not is_git_repo(path):
            raise ValueError(f"{path} is not a git repository (no .git). Run `git init` and commit first, "
                             "or give a git URL.")
        repo = str(path)
        if forge == "local":
            refuse_dirty_worktree(path)
    raw = categories.split(",") if isinstance(categories, str) else list(categories)
    cats = [c.strip() for c in raw if c and c.strip()]
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown or not cats:
        raise ValueError(f"unknown categories {unknown or categories!r}; choose from {', '.join(CATEGORIES)}")
    if threshold is not None and not 1.0 <= threshold <= 10.0:
        raise ValueError(f"threshold {threshold} is out of range; give a score from 1 to 10")
    if engine not in (None, *ENGINES):
        raise ValueError(f"unknown engine {engine!r}; choose rules or llm")
    if forge not in FORGES:
        raise ValueError(f"unknown forge {forge!r}; choose {', '.join(FORGES)}")
    if forge == "local" and looks_remote(repo):
        forge = "github" if "github.com" in repo and settings.github_token else "remote"
    if engine == "llm" and settings.default_engine != "llm":
        raise ValueError("the llm engine needs a model: set OPENAI_API_KEY and/or OPENAI_BASE_URL")
    return PipelineRequested(
        repo=repo, ref=ref, categories=cats, forge=forge,
        threshold=threshold if threshold is not None else settings.auto_merge_threshold,
        engine=engine or settings.default_engine,
    )


def refuse_dirty_worktree(path: Path) -> None:
    """ValueError (with what to do) when `path` is a working tree with uncommitted changes to
    tracked files: the local forge merges into it, and that would fail only after all the work."""
    from shared.adapters.git import git

    if git(path, "rev-parse", "--is-bare-repository", check=False) == "true":
        return
    changed = git(path, "diff", "--name-only", "HEAD", check=False)  # staged or not; "" without commits
    if changed:
        files = ", ".join(changed.splitlines()[:5])
        raise ValueError(f"{path} has uncommitted changes ({files}); the local forge merges into this working "
                         "tree. Commit or stash your changes (`git stash`), then run again.")


class RunInProgress(ValueError):
    """Another run on the same repository and ref has not ended: two would merge the same changes."""

    def __init__(self, repo: str, ref: str | None, runs: list[str]):
        super().__init__(
            f"a run on {repo} ({'ref ' + ref if ref else 'default branch'}) is in progress: {runs[0]}. "
            f"Wait for it to end (`repo-pilot status {runs[0]}`); a run that stopped moving is ended "
            "by the sweeper after REPO_PILOT_STALL_AFTER seconds."
        )
        self.runs = runs


async def append_request(store, request: PipelineRequested, *, service: str,
                         metadata: dict | None = None) -> str:
    """Append `request` as the first event of a new run stream; returns the run id.

    One run at a time per repository and ref: raises RunInProgress when one has not ended (checked
    and appended in the store's `target_transaction`, so two requests racing for the same target
    cannot both get in)."""
    from shared.common.telemetry import tracer
    from shared.store.queries import target_transaction

    stream = new_run_stream()
    # The root of the run's trace: every service's span continues from this event's traceparent.
    with tracer().start_as_current_span("run requested", attributes={"pilot.stream_id": stream}):
        event = make_event(request, stream, service=service, metadata=metadata)
    async with target_transaction(store, request.repo, request.ref) as (conn, running):
        if running:
            raise RunInProgress(request.repo, request.ref, running)
        await store.append_in(conn, stream, [event], 0)
    return stream


async def end_untaken(store, run_id: str, error: str, hint: str) -> bool:
    """End `run_id` with PipelineFailed when nothing has reacted to its request yet (its stream
    holds only the request); True when this ended it, False when something took it meanwhile.
    So a run nobody will ever handle does not hold its repository (`RunInProgress`)."""
    from shared.events.run import PipelineFailed
    from shared.store import ConcurrencyError

    failed = make_event(PipelineFailed(step="analyze", error=error, hint=hint), run_id, service="cli")
    try:
        await store.append(run_id, [failed], 1)
    except ConcurrencyError:
        return False
    return True
