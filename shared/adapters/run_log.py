"""A run's log for the user: its whole event stream as JSON under REPO_PILOT_HOME/runs/<run>.json.

Written once the run has ended (after `PipelineCompleted` or `PipelineFailed` is in the store),
for failed runs as well, so it holds every event; written to a temp file and renamed, so a reader
never sees half a log. Writing it again (a redelivery, the CLI and the analyzer both) is harmless.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from shared.common.redaction import redact_known


def run_log_path(runs_dir: Path, run_id: str) -> Path:
    return Path(runs_dir) / f"{run_id}.json"


async def write_run_log(store, runs_dir: Path, run_id: str) -> Path:
    """Write the stream `run_id` as it is in the store now; returns the log's path."""
    events = await store.read_stream(run_id)
    path = run_log_path(runs_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{run_id}-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            # Secrets that reached an event (a test's output, say) never reach the log file.
            fh.write(redact_known(json.dumps([json.loads(e.to_json()) for e in events], indent=2)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class FileRunLog:
    """The RunLog port (shared/ports/run_log.py): one JSON file per run under `runs_dir`."""

    def __init__(self, store, runs_dir: Path):
        self.store, self.runs_dir = store, Path(runs_dir)

    def path(self, run_id: str) -> Path:
        return run_log_path(self.runs_dir, run_id)

    async def write(self, run_id: str) -> Path:
        return await write_run_log(self.store, self.runs_dir, run_id)
