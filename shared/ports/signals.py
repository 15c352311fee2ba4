"""The Signals port: objective facts about a change (findings before and after, parse failures,
diff size) that the review is scored from (shared.policy.review).

`shared.adapters.signals.StaticSignals` is the real one (ruff on the touched files);
`tests/support/fakes.py` holds a scripted one. Both pass tests/contract/test_signals_contract.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# What every implementation returns (the review policy reads these keys).
SIGNAL_KEYS = frozenset({
    "base_sha", "head_sha", "checked_files", "select", "findings_before", "findings_after",
    "findings_delta", "parse_failures", "diff", "created_files",
})


@runtime_checkable
class Signals(Protocol):
    async def compute(self, repo: Path, base_sha: str, head_sha: str) -> dict[str, Any]:
        """Signals for base_sha..head_sha in the working copy `repo`, with the shas resolved to
        commits (names like HEAD move); ValueError when either is not a commit."""
        ...
