"""Is this container's Repo Pilot process alive and working? What `repo-pilot alive` answers for a
container health check (docker-compose.yml).

A long-running command (`service`, `relay`, `up`) writes what its `System.health()` says about its
own tasks and consumers to a small file every `BEAT_EVERY` seconds; `alive` reads those files.
A file and not a port because the services speak only to NATS and Postgres and serve nothing. The
writer is a task on the process's own event loop, so a hung loop stops renewing the file (stale),
and the content carries what only the process knows (a relay restarting after an error, a consumer
that lost its durable): the check sees a hung or half-dead process, not only a dead one, which the
container runtime sees by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BEAT_EVERY = 10.0
STALE_AFTER = 60.0  # several missed beats: the loop is hung, not merely busy for a moment


def beat_dir() -> Path:
    """Per user, outside REPO_PILOT_HOME: every pilot container shares /data, each has its own /tmp."""
    return Path(tempfile.gettempdir()) / f"repo-pilot-{os.getuid()}"


def write_beat(path: Path, state: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps({"pid": os.getpid(), "at": time.time(), "state": state}))
    scratch.replace(path)  # atomic: a reader never sees half a file


@contextlib.asynccontextmanager
async def beating(role: str, health: Callable[[], dict[str, str]], every: float = BEAT_EVERY,
                  directory: Path | None = None):
    """Renew `role`'s liveness file from `health()` every `every` seconds while the block runs;
    the file is removed when the block ends (a stopped process is not a hung one)."""
    path = (directory or beat_dir()) / f"alive-{role}.json"

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            write_beat(path, health())

    write_beat(path, health())  # alive from the moment the block starts

    task = asyncio.create_task(beat(), name=f"liveness {role}")
    try:
        yield path
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Report:
    role: str
    pid: int
    age: float
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def check(directory: Path | None = None, stale_after: float = STALE_AFTER, now: float | None = None) -> list[Report]:
    """One report per running process that keeps a liveness file (files of processes that are gone
    are removed); a report has problems when its file is stale or a task or consumer is not running."""
    now = time.time() if now is None else now
    reports = []
    for path in sorted((directory or beat_dir()).glob("alive-*.json")):
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced right now, or not ours
        if not _running(beat["pid"]):
            path.unlink(missing_ok=True)
            continue
        age = max(0.0, now - beat["at"])
        problems = [f"{task}: {why}" for task, why in sorted(beat["state"].items()) if why]
        if age > stale_after:
            problems.insert(0, f"no report for {age:.0f}s (limit {stale_after:g}s): its event loop is hung")
        reports.append(Report(path.stem.removeprefix("alive-"), beat["pid"], age, problems))
    return reports
