"""Reading what the generator finds on disk: a CooperBench task directory (`load_task`) and the
records the pytest plugin (`pytest_plugin/repo_pilot_junit.py`) wrote during a task's test run
(`read_records`). The model they fill is pure: `shared.policy.generation`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.policy.generation.newtests import Records, TestRecord
from shared.policy.generation.task import Feature, Task, parse_setup_sh
from shared.ports.errors import StepError

# Loaded into a task's own pytest (PYTEST_PLUGINS, with this folder on PYTHONPATH): it runs in the
# target's process and writes the records `read_records` reads.
PLUGIN_DIR = Path(__file__).parent / "pytest_plugin"


def read_records(junit_dir: Path) -> Records | None:
    """The plugin's per-session records in `junit_dir`, merged; None when no session wrote any."""
    files = sorted(Path(junit_dir).glob("tests-*.json"))
    if not files:
        return None
    records = Records()
    for path in files:
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue  # a session killed mid-write; the others still count
        for t in data.get("tests", []):
            lines = tuple(t["lines"]) if t.get("lines") else None
            records.tests[t["nodeid"]] = TestRecord(t["nodeid"], t["path"], t["name"], lines, t["outcome"],
                                                    t.get("exception", ""))
        records.collect_errors.extend(data.get("collect_errors", []))
    return records


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def load_task(task_dir: Path) -> Task:
    """Read a task directory; raises StepError with a clear message when it isn't one."""
    task_dir = Path(task_dir).resolve()
    if not task_dir.is_dir():
        raise StepError(f"task directory not found: {task_dir}")
    features = []
    for child in task_dir.iterdir():
        m = re.fullmatch(r"feature(\d+)", child.name)
        if not (m and child.is_dir()):
            continue
        patch = _read(child / "feature.patch")
        if not patch.strip():
            continue  # a feature folder without a source patch has nothing to conflict with
        features.append(Feature(int(m.group(1)), child, _read(child / "feature.md"), patch,
                                _read(child / "tests.patch")))
    features.sort(key=lambda f: f.number)
    runner = _read(task_dir / "runner.sh")
    run_tests = task_dir / "run_tests.sh"
    if not features:
        raise StepError(f"{task_dir} is not a task directory: no feature<N>/feature.patch inside",
                        hint="point --task at dataset/<repo>_task/task<id>")
    if not runner and not run_tests.is_file():
        raise StepError(f"{task_dir} has neither runner.sh nor run_tests.sh: no way to run its tests")
    url, base = parse_setup_sh(_read(task_dir / "setup.sh"))
    dockerfile = task_dir / "Dockerfile"
    return Task(
        path=task_dir,
        repo_url=url,
        base_commit=base,
        runner_sh=runner,
        run_tests_sh=run_tests if run_tests.is_file() else None,
        dockerfile=dockerfile if dockerfile.is_file() else None,
        features=features,
    )
