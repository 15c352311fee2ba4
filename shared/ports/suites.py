"""The Suites port: running a target's tests — its own suite, and generated test files — in the
sandbox, with the target's own environment (Python) or its ecosystem's runner (npm, cargo, go).

`shared.engines.suites.SandboxSuites` is the real one; `tests/support/fakes.py` holds a scripted
one. Both pass tests/contract/test_suites_contract.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from shared.events import TestGroupResult


@dataclass(frozen=True)
class Suite:
    """How one working copy's tests run: its language and (Python) the implementation's handle on
    the interpreter prepared for it."""

    language: str
    python: Any = None


@runtime_checkable
class Suites(Protocol):
    async def prepare(self, before: Path, after: Path) -> tuple[Suite, Suite]:
        """The suites of a change's base and head copies (one environment when their declared
        dependencies are the same); the language is the base's."""
        ...

    async def run_own(self, path: Path, suite: Suite) -> TestGroupResult:
        """The repository's own suite (group "own")."""
        ...

    async def run_generated(self, path: Path, files: Sequence[str], group: str, suite: Suite) -> TestGroupResult:
        """Generated test files already written into `path`: pytest files in the target's env,
        others with their ecosystem's runner; one result for the group."""
        ...
