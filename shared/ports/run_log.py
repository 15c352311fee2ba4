"""The RunLog port: a run's whole event stream written for the user once the run has ended.

`shared.adapters.run_log.FileRunLog` is the real one (JSON under REPO_PILOT_HOME/runs);
`tests/support/fakes.py` holds one in memory. Both pass tests/contract/test_run_log_contract.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class RunLog(Protocol):
    def path(self, run_id: str) -> Path:
        """Where the run's log is (or will be) written; known before it is."""
        ...

    async def write(self, run_id: str) -> Path:
        """Write the run's stream as the store has it now (again is harmless); returns `path(run_id)`.
        OSError when it cannot be written."""
        ...
