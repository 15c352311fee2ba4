"""What a path in a repository is (pure): the one home of "is this a test file" and "is this a
project file a repository is expected to have"."""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath

TEST_DIRS = frozenset({"tests", "test", "__tests__", "testdata", "spec", "specs"})
TEST_NAMES = (
    "test_*.py", "*_test.py", "conftest.py", "tests.py",
    "*_test.go",
    "tests.rs", "*_tests.rs", "*_test.rs",
    "*.test.js", "*.test.jsx", "*.test.ts", "*.test.tsx", "*.test.mjs", "*.test.cjs",
    "*.spec.js", "*.spec.jsx", "*.spec.ts", "*.spec.tsx", "*.spec.mjs", "*.spec.cjs",
)  # fmt: skip


def is_test_path(path: str) -> bool:
    """True when `path` (relative, `/`-separated) is a test file by the conventions of Python, Go,
    Rust or JavaScript: inside a test directory at any depth, or named like a test module."""
    p = PurePosixPath(path)
    if any(part in TEST_DIRS for part in p.parts[:-1]):
        return True
    return any(fnmatch.fnmatch(p.name, pattern) for pattern in TEST_NAMES)


# Files a maintained repository is expected to have, whatever its language: adding one that was
# missing is a change of value in itself (docs/review.md), like removing a finding.
PROJECT_FILES = frozenset({
    "LICENSE", "SECURITY.md", "CONTRIBUTING.md", "CHANGELOG.md", "CODE_OF_CONDUCT.md",
    ".github/dependabot.yml", ".pre-commit-config.yaml", ".editorconfig", "mypy.ini",
})  # fmt: skip


def is_project_file(path: str) -> bool:
    """True for a repository-level file of the kind listed in PROJECT_FILES, or a CI workflow."""
    return path in PROJECT_FILES or (path.startswith(".github/workflows/") and path.endswith((".yml", ".yaml")))


# Suffixes of code (what a change of behaviour lives in), across the ecosystems the engines read.
CODE_SUFFIXES = frozenset({".py", ".pyi", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".go", ".rs"})
GENERATED_TESTS_DIRS = ("tests/repo_pilot/", ".repo-pilot/")


def is_code_path(path: str) -> bool:
    """True for a source file of the project itself: code, not its tests, docs, configs or the
    tests Repo Pilot generates."""
    p = PurePosixPath(path)
    return (p.suffix in CODE_SUFFIXES and not is_test_path(path) and not path.startswith(GENERATED_TESTS_DIRS)
            and not {"docs", "doc"} & set(p.parts[:-1]))
