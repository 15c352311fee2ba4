"""The Suites port (shared/ports/suites.py) in the sandbox: the target's own environment for
Python (shared.adapters.target_env), its ecosystem's runner otherwise (shared.adapters.own_tests).

It sits with the engines because which language a repository is, is the rules engine's call
(`shared.engines.rules.project.detect`): one rule, one home.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from shared.adapters.git import sanitise_after_code_ran
from shared.adapters.own_tests import combined, run_ecosystem_suite, run_generated_files, run_own_pytest
from shared.adapters.sandbox import run_pytest
from shared.adapters.target_deps import same_dependencies
from shared.adapters.target_env import python_for
from shared.engines.rules.facts import list_files
from shared.engines.rules.project import detect as detect_project
from shared.events import TestGroupResult
from shared.ports.sandbox import Sandbox
from shared.ports.suites import Suite

TIMEOUT = 600  # seconds for one suite run


class SandboxSuites:
    def __init__(self, sandbox: Sandbox, home: Path, timeout: float = TIMEOUT):
        self.sandbox, self.home, self.timeout = sandbox, Path(home), timeout

    async def prepare(self, before: Path, after: Path) -> tuple[Suite, Suite]:
        py = await python_for(after, self.home, self.sandbox)
        py_before = py if same_dependencies(before, after) else await python_for(before, self.home, self.sandbox)
        language = detect_project(before, list_files(before)).language or "python"
        return Suite(language, py_before), Suite(language, py)

    async def run_own(self, path: Path, suite: Suite) -> TestGroupResult:
        try:
            if suite.language == "python":
                return await run_own_pytest(self.sandbox, path, suite.python, self.timeout)
            # the repository's own runner (npm/node, cargo, go); generated tests stay pytest
            return await run_ecosystem_suite(self.sandbox, path, suite.language, self.timeout)
        finally:  # the project's code ran in the copy: what it planted in its `.git` goes now
            await asyncio.to_thread(sanitise_after_code_ran, path)

    async def run_generated(self, path: Path, files: Sequence[str], group: str, suite: Suite) -> TestGroupResult:
        pytest_files = [f for f in files if f.endswith(".py")]
        others = [f for f in files if not f.endswith(".py")]
        parts = []
        if pytest_files:
            py = suite.python
            parts.append(await run_pytest(self.sandbox, path, pytest_files, timeout=self.timeout, group=group,
                                          python=py.executable, plugins=py.plugins))
        if others:
            parts.append(await run_generated_files(self.sandbox, path, others, group, self.timeout))
        await asyncio.to_thread(sanitise_after_code_ran, path)  # the tests import the project's code
        return combined(group, parts)
