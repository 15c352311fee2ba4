"""Splitting an agent's diff into feature.patch (source) and tests.patch (tests) (pure).

Test files are recognised by the path conventions of each language:
Python `test_*.py`, `*_test.py`, `conftest.py`, anything under `tests/` or `test/`;
Go `*_test.go` and `testdata/`; Rust `tests/` at a crate root and `tests.rs` / `*_tests.rs`
(inline `#[cfg(test)]` modules live in source files and stay with the feature);
JavaScript/TypeScript `*.test.*`, `*.spec.*`, `__tests__/`, `test/`, `tests/`.
Scratch and build output (caches, `node_modules/`, `target/`, `dist/`, `build/`, logs,
`*.orig`/`*.rej`, `scratch*`/`tmp*` files, a `feature.md` at the root) are dropped.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from shared.policy import paths as policy_paths

_SCRATCH_DIRS = {
    "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".nox", ".venv", "venv",
    "node_modules", "target", "dist", "build", ".next", "coverage", ".cache", ".idea", ".vscode",
}
_SCRATCH_NAMES = [
    "*.pyc", "*.pyo", "*.egg-info", ".coverage", ".coverage.*", "*.log", "*.orig", "*.rej", "*.swp",
    ".DS_Store", "scratch*", "tmp*", "*.tmp", "*.bak", "repro*.py", "debug*.py", "*.patch", "*.diff",
    "trajectory.json",
]
_ROOT_ONLY_SCRATCH = {"feature.md", "result.json"}


def is_scratch(path: str) -> bool:
    """Files that are by-products of working, not part of a feature."""
    p = PurePosixPath(path)
    if any(part in _SCRATCH_DIRS or part.endswith(".egg-info") for part in p.parts[:-1]):
        return True
    if len(p.parts) == 1 and p.name in _ROOT_ONLY_SCRATCH:
        return True
    return any(fnmatch.fnmatch(p.name, pat) for pat in _SCRATCH_NAMES)


def is_test_path(path: str) -> bool:
    """True when `path` is a test file by the conventions of Python, Go, Rust or JavaScript."""
    return policy_paths.is_test_path(path)


@dataclass
class Split:
    feature_patch: str
    tests_patch: str
    feature_files: list[str] = field(default_factory=list)
    test_files: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def failure(self) -> str | None:
        """Why this split cannot be a feature (None when it can)."""
        if not self.feature_files and not self.test_files:
            return "the agent changed nothing (no diff against the base commit)"
        if not self.feature_files:
            return f"no source changes: every change is a test ({', '.join(self.test_files)})"
        if not self.test_files:
            return f"no test changes: the feature ({', '.join(self.feature_files)}) comes without tests"
        return None


_DIFF_START = re.compile(r"^diff --git ", re.MULTILINE)


def _file_chunks(diff: str) -> list[str]:
    """The diff cut at each `diff --git` header (keeps binary and mode-only entries intact)."""
    starts = [m.start() for m in _DIFF_START.finditer(diff)]
    ends = starts[1:] + [len(diff)]
    return [diff[a:b] for a, b in zip(starts, ends, strict=False)]


def _chunk_path(chunk: str) -> str:
    try:
        files = PatchSet(chunk)
    except UnidiffParseError:
        files = []
    if len(files) == 1 and files[0].path:
        return files[0].path
    header = chunk.splitlines()[0]  # diff --git a/x b/x
    return header.split(" b/", 1)[-1].strip()


def split_diff(diff: str) -> Split:
    """Cut a `git diff` into source and test parts; scratch and build files are dropped."""
    feature, tests = [], []
    result = Split("", "")
    for chunk in _file_chunks(diff):
        path = _chunk_path(chunk)
        if not chunk.endswith("\n"):
            chunk += "\n"
        if is_scratch(path):
            result.dropped.append(path)
        elif is_test_path(path):
            tests.append(chunk)
            result.test_files.append(path)
        else:
            feature.append(chunk)
            result.feature_files.append(path)
    result.feature_patch = "".join(feature)
    result.tests_patch = "".join(tests)
    return result
