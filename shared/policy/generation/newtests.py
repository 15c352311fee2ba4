"""Which tests a tests.patch adds or changes, and how they failed (pure; `shared.adapters.task_dir.read_records` reads the reports).

The pytest plugin (`shared/adapters/pytest_plugin/repo_pilot_junit.py`) writes, per session, every collected test
with its file and the source lines of its function. A test is new when its lines hold a line the
tests.patch adds: tests already in the file and left alone are not counted, a test whose body the
patch changed is. A `def test_…` the patch adds that no session collected was never run by the
task's runner (a file it does not run), and is named as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

# A test that fails only because the feature's new name is not there yet says nothing of behaviour.
_MISSING = {"ImportError", "ModuleNotFoundError", "AttributeError", "NameError"}
_MISSING_TEXT = re.compile(r"\b(ImportError|ModuleNotFoundError|AttributeError|NameError)\b|cannot import name")
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(test\w*)\s*\(")


@dataclass(frozen=True)
class TestRecord:
    __test__ = False

    nodeid: str
    path: str
    name: str
    lines: tuple[int, int] | None
    outcome: str  # passed | failed | error | skipped | not run
    exception: str = ""

    @property
    def missing_name(self) -> bool:
        return self.exception in _MISSING


@dataclass
class Records:
    """What the pytest sessions of one run collected and how each test ended."""

    tests: dict[str, TestRecord] = field(default_factory=dict)
    collect_errors: list[dict[str, str]] = field(default_factory=list)


def added_lines(patch: str) -> dict[str, set[int]]:
    """New-side line numbers of the lines `patch` adds, per target path (pure)."""
    try:
        files = PatchSet(patch)
    except UnidiffParseError as exc:
        raise ValueError(f"not a unified diff: {exc}") from None
    found: dict[str, set[int]] = {}
    for f in files:
        if f.is_removed_file:
            continue
        lines = {line.target_line_no for hunk in f for line in hunk if line.is_added}
        if lines:
            found[f.path] = lines
    return found


def declared_tests(patch: str) -> list[tuple[str, str]]:
    """(path, function name) of every `def test_…` line the patch adds (pure)."""
    found = []
    for f in PatchSet(patch):
        for hunk in f:
            for line in hunk:
                m = _DEF.match(line.value) if line.is_added else None
                if m:
                    found.append((f.path, m.group(1)))
    return found


def _in_patch_file(record: TestRecord, path: str) -> bool:
    return record.path == path or record.path.endswith("/" + path)


@dataclass
class NewTests:
    ids: list[str]  # collected tests whose lines the patch added or changed
    not_run: list[str]  # tests the patch declares that no session collected: "<path>::<name>"


def new_tests(records: Records, tests_patch: str) -> NewTests:
    """The tests `tests_patch` adds or changes among those collected (pure)."""
    added = added_lines(tests_patch)
    ids = []
    for record in records.tests.values():
        for path, lines in added.items():
            if (_in_patch_file(record, path) and record.lines is not None
                    and any(record.lines[0] <= n <= record.lines[1] for n in lines)):
                ids.append(record.nodeid)
                break
    collected = {(p, r.name) for r in records.tests.values() for p in added if _in_patch_file(r, p)}
    not_run = [f"{p}::{name}" for p, name in declared_tests(tests_patch) if (p, name) not in collected]
    return NewTests(sorted(ids), not_run)


def failed_by_missing_name(records: Records, ids: list[str]) -> bool:
    """True when the tests `ids` did not pass only because a name was missing: an import or
    attribute error in the test, or a collection error of their file that names one (pure)."""
    failing = [records.tests[i] for i in ids if i in records.tests and records.tests[i].outcome in ("failed", "error")]
    if any(not r.missing_name for r in failing):
        return False
    missing = [i for i in ids if i not in records.tests]
    if missing and not all(_MISSING_TEXT.search(e["text"]) for e in records.collect_errors):
        return False
    return bool(failing or missing)
