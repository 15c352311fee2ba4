"""Behaviour-changing fixes are validated in batches with the repository's own suite (validate.py):
one run for candidates that all pass, halves down to single fixes when a batch fails."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from shared.adapters.sandbox import LocalSandbox
from shared.engines.rules.validate import SUITE_RUNS, OwnTests, compare
from tests.support.rules_repos import git, make_repo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FILES = {
    "calc/__init__.py": "",
    "calc/add.py": "def add(a, b):\n    return a + b\n",
    "calc/mul.py": "def mul(a, b):\n    return a * b\n",
    "calc/neg.py": "def neg(a):\n    return -a\n",
    "tests/test_calc.py": (
        "from calc.add import add\nfrom calc.mul import mul\nfrom calc.neg import neg\n\n\n"
        "def test_add():\n    assert add(2, 3) == 5\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n\n\n"
        "def test_neg():\n    assert neg(2) == -2\n"),
}  # fmt: skip


def _copies(tmp_path, n):
    base = make_repo(tmp_path / "base", FILES)
    copies = []
    for i in range(n):
        copy = tmp_path / f"copy{i}"
        subprocess.run(["git", "clone", "-q", str(base), str(copy)], check=True)
        copies.append(copy)
    return copies


async def _validate(tests: OwnTests, copies, edits) -> list:
    """Each copy asks for the base run, gets its edit, then hands it in, all at once (as the
    executor drafts improvements concurrently); returns each one's verdict."""
    async def candidate(copy, edit):
        before = await tests.baseline(copy)
        for rel, text in edit.items():
            (copy / rel).write_text(text)
        return compare(before, await tests.changed(copy))

    return await asyncio.gather(*(candidate(c, e) for c, e in zip(copies, edits, strict=True)))


async def test_fixes_that_all_pass_are_validated_in_one_run(tmp_path):
    copies = _copies(tmp_path, 3)
    tests = OwnTests(tmp_path / "home", LocalSandbox())
    sha = git(copies[0], "rev-parse", "HEAD")
    edits = [{"calc/add.py": "def add(a, b):\n    return b + a\n"},
             {"calc/mul.py": "def mul(a, b):\n    return b * a\n", "calc/extra.py": "X = 1\n"},
             {"calc/neg.py": "def neg(a):\n    return 0 - a\n"}]
    verdicts = await _validate(tests, copies, edits)
    assert all(v.ok for v in verdicts), verdicts
    assert all("together with 2 other fix(es)" in v.reason for v in verdicts)
    assert SUITE_RUNS[sha] == 2  # the base, and the three fixes once together
    # the host copy is back to its own change alone
    assert git(copies[0], "status", "--porcelain") == "M calc/add.py"


async def test_a_failing_batch_is_split_until_the_breaking_fix_is_alone(tmp_path):
    copies = _copies(tmp_path, 4)
    tests = OwnTests(tmp_path / "home", LocalSandbox())
    sha = git(copies[0], "rev-parse", "HEAD")
    edits = [{"calc/add.py": "def add(a, b):\n    return b + a\n"},
             {"calc/mul.py": "def mul(a, b):\n    return a + b\n"},  # breaks test_mul
             {"calc/neg.py": "def neg(a):\n    return 0 - a\n"},
             {"calc/add.py": "def add(a, b):\n    return a + b + 0\n"}]  # same file as the first: another batch
    verdicts = await _validate(tests, copies, edits)
    assert [v.ok for v in verdicts] == [True, False, True, True], verdicts
    assert "test_mul" in verdicts[1].reason
    # base; batch {0,1,2} fails; {0} alone; {1,2} fails; {1} alone; {2} alone; batch {3} alone
    assert SUITE_RUNS[sha] == 7
    for copy, edit in zip(copies, edits, strict=True):
        assert git(copy, "status", "--porcelain").split() == ["M", *edit]
