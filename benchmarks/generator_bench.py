"""What a proven verdict costs: one feature validated on the fixture task (3 existing features),
first attempt vs a later one in the same process (the existing features' base runs are reused),
against the single test run the generator used to make.

    python -m benchmarks.generator_bench [--rounds 2]

Prints runs of the task's test script and wall seconds per validation. Not part of the test run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shared.adapters.workspace import checkout_base
from shared.engines.generator import validate
from shared.engines.generator.validate import TaskTests, run_task_tests, validate_patches
from tests.support.task_fixture import make_task, pair, upstream


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    table = Table(title="generator: one validation of the fixture task (3 existing features)")
    for col in ("what", "test-script runs", "seconds"):
        table.add_column(col)
    counted = {"runs": 0}
    original = TaskTests.run

    def counting(self, *args, **kwargs):
        counted["runs"] += 1
        return original(self, *args, **kwargs)

    TaskTests.run = counting
    with tempfile.TemporaryDirectory(prefix="repo-pilot-bench-") as tmp:
        task = make_task(Path(tmp) / "fixture")
        feature_patch, tests_patch = pair(task, "two_conflicts")
        repo = Path(tmp) / "single"
        checkout_base(str(upstream(task)), task.base_commit, repo)
        counted["runs"], started = 0, time.perf_counter()
        run_task_tests(task, repo, feature_patch, tests_patch, backend="local")
        table.add_row("baseline: one test run (the old verdict)", str(counted["runs"]),
                      f"{time.perf_counter() - started:.2f}")
        validate._BASE_RUNS.clear()
        for n in range(1, rounds + 1):
            counted["runs"], started = 0, time.perf_counter()
            result = validate_patches(task, str(upstream(task)), feature_patch, tests_patch, backend="local")
            assert result.valid, result.reason
            label = "first validation" if n == 1 else f"validation {n} (base runs reused)"
            table.add_row(label, str(counted["runs"]), f"{time.perf_counter() - started:.2f}")
    TaskTests.run = original
    Console().print(table)


if __name__ == "__main__":
    main()
