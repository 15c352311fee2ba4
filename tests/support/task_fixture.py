"""A fixture task in the CooperBench layout, built for real in a temp dir.

The base repository `calc` has one module `calc/ops.py` (add, subtract, multiply, divide, each
far enough from the others that their hunks never share a line) and a pytest suite. Three
features overlap in known ways:

    feature1  changes `add`                      (tests: test_add_rounding)
    feature2  changes `add` and `multiply`       (tests: test_add_many, test_multiply_many)
    feature3  changes `divide`                   (tests: test_divide_default)

so the hot spots are: add region {1, 2}, multiply {2}, divide {3}. `PAIRS` holds the new
patches the tests validate, each built against the same base.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.adapters.task_dir import load_task
from shared.policy.generation.task import Task

_PAD = "\n".join(f"# padding line {i}" for i in range(8))

BASE_OPS = f'''"""Small arithmetic helpers."""


def add(a, b):
    """Return a plus b."""
    return a + b


{_PAD}


def subtract(a, b):
    """Return a minus b."""
    return a - b


{_PAD}


def multiply(a, b):
    """Return a times b."""
    return a * b


{_PAD}


def divide(a, b):
    """Return a divided by b."""
    return a / b
'''

BASE_TESTS = '''from calc.ops import add, divide, multiply, subtract


def test_add():
    assert add(2, 3) == 5


def test_subtract():
    assert subtract(5, 3) == 2


def test_multiply():
    assert multiply(4, 3) == 12


def test_divide():
    assert divide(8, 2) == 4
'''

ADD_BODY = '''def add(a, b):
    """Return a plus b."""
    return a + b
'''
MULTIPLY_BODY = '''def multiply(a, b):
    """Return a times b."""
    return a * b
'''
DIVIDE_BODY = '''def divide(a, b):
    """Return a divided by b."""
    return a / b
'''


def ops_with(**bodies: str) -> str:
    """BASE_OPS with some functions replaced: ops_with(add="def add(...): ...")."""
    text = BASE_OPS
    for name, body in bodies.items():
        original = {"add": ADD_BODY, "multiply": MULTIPLY_BODY, "divide": DIVIDE_BODY}[name]
        text = text.replace(original, body)
    return text


def tests_with(extra: str, name: str = "tests/test_ops.py") -> dict[str, str]:
    return {name: BASE_TESTS + "\n\n" + extra.strip() + "\n"}


FEATURES: dict[int, tuple[str, dict[str, str], dict[str, str]]] = {
    1: (
        "Rounding for add",
        {"calc/ops.py": ops_with(add='''def add(a, b, ndigits=None):
    """Return a plus b, rounded to ndigits when given."""
    total = a + b
    return total if ndigits is None else round(total, ndigits)
''')},
        tests_with("def test_add_rounding():\n    assert add(0.1, 0.2, ndigits=2) == 0.3"),
    ),
    2: (
        "Variadic add and multiply",
        {"calc/ops.py": ops_with(add='''def add(a, b, *more):
    """Return the sum of all arguments."""
    return a + b + sum(more)
''', multiply='''def multiply(a, b, *more):
    """Return the product of all arguments."""
    result = a * b
    for value in more:
        result *= value
    return result
''')},
        tests_with("def test_add_many():\n    assert add(1, 2, 3) == 6\n\n\n"
                   "def test_multiply_many():\n    assert multiply(2, 3, 4) == 24"),
    ),
    3: (
        "Default for division by zero",
        {"calc/ops.py": ops_with(divide='''def divide(a, b, default=None):
    """Return a divided by b, or default when b is zero and a default is given."""
    if b == 0 and default is not None:
        return default
    return a / b
''')},
        tests_with("def test_divide_default():\n    assert divide(1, 0, default=0) == 0"),
    ),
}

# New feature / tests pairs, each {path: content} against the base.
_MULTIPLY_CHECKED = '''def multiply(a, b):
    """Return a times b; both must be numbers."""
    if not all(isinstance(v, (int, float)) for v in (a, b)):
        raise TypeError("multiply needs numbers")
    return a * b
'''
_DIVIDE_CHECKED = '''def divide(a, b):
    """Return a divided by b; b must not be zero."""
    if b == 0:
        raise ValueError("division by zero")
    return a / b
'''
_IS_NUMBER_MULTIPLY = '''def is_number(value):
    """True for ints and floats."""
    return isinstance(value, (int, float))


def multiply(a, b):
    """Return a times b; both must be numbers."""
    if not (is_number(a) and is_number(b)):
        raise TypeError("multiply needs numbers")
    return a * b
'''
PAIRS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    # conflicts with feature2 (multiply) and feature3 (divide), clean with feature1; tests pass
    "two_conflicts": (
        {"calc/ops.py": ops_with(multiply=_MULTIPLY_CHECKED, divide=_DIVIDE_CHECKED)},
        tests_with("import pytest\n\n\ndef test_checked():\n    with pytest.raises(TypeError):\n"
                   "        multiply('a', 2)\n    with pytest.raises(ValueError):\n        divide(1, 0)"),
    ),
    # a new module only: merges cleanly with every feature; tests pass
    "clean": (
        {"calc/extra.py": "def negate(a):\n    return -a\n"},
        {"tests/test_extra.py": "from calc.extra import negate\n\n\ndef test_negate():\n"
                                "    assert negate(2) == -2\n"},
    ),
    # conflicts like two_conflicts but multiply is wrong: test_multiply fails
    "breaks_tests": (
        {"calc/ops.py": ops_with(multiply=_MULTIPLY_CHECKED.replace("return a * b", "return a * b + 1"),
                                 divide=_DIVIDE_CHECKED)},
        tests_with("def test_divide_checked():\n    import pytest\n\n    with pytest.raises(ValueError):\n"
                   "        divide(1, 0)"),
    ),
    # the two_conflicts feature with tests that only exercise what the base already does
    "tests_pass_without": (
        {"calc/ops.py": ops_with(multiply=_MULTIPLY_CHECKED, divide=_DIVIDE_CHECKED)},
        tests_with("def test_multiply_again():\n    assert multiply(2, 5) == 10"),
    ),
    # the two_conflicts feature, plus a broken subtract no new test looks at (the new tests live in
    # their own file) — but every existing feature's tests.patch runs tests/test_ops.py
    "breaks_existing": (
        {"calc/ops.py": ops_with(multiply=_MULTIPLY_CHECKED, divide=_DIVIDE_CHECKED).replace(
            "return a - b", "return b - a")},
        {"tests/test_checked.py": "import pytest\n\nfrom calc.ops import divide, multiply\n\n\n"
                                  "def test_checked():\n    with pytest.raises(TypeError):\n"
                                  "        multiply('a', 2)\n    with pytest.raises(ValueError):\n"
                                  "        divide(1, 0)\n"},
    ),
}

# conflicts like two_conflicts; its only new test imports the new name `is_number` and checks it is
# there: without the feature it fails by ImportError alone, and it passes whatever is_number does
PAIRS["imports_only"] = (
    {"calc/ops.py": ops_with(multiply=_IS_NUMBER_MULTIPLY, divide=_DIVIDE_CHECKED)},
    tests_with("from calc.ops import is_number  # noqa: E402\n\n\n"
               "def test_is_number_is_there():\n    assert is_number is not None"),
)
# the same feature with tests that check what is_number and the checks do
PAIRS["kills_mutants"] = (
    PAIRS["imports_only"][0],
    tests_with("import pytest  # noqa: E402\n\nfrom calc.ops import is_number  # noqa: E402\n\n\n"
               "@pytest.mark.parametrize('value, expected', [(1, True), (2.5, True), ('x', False)])\n"
               "def test_is_number(value, expected):\n    assert is_number(value) is expected\n\n\n"
               "def test_checked():\n    with pytest.raises(TypeError):\n        multiply('a', 2)\n"
               "    with pytest.raises(TypeError):\n        multiply(2, 'a')\n"
               "    with pytest.raises(ValueError):\n        divide(1, 0)"),
)

# A feature.patch whose context is not in the base: `git apply` refuses it.
NOT_APPLYING_PATCH = '''diff --git a/calc/ops.py b/calc/ops.py
--- a/calc/ops.py
+++ b/calc/ops.py
@@ -22,2 +22,2 @@ def multiply(a, b):
     """Return a raised to b."""
-    return a ** b
+    return pow(a, b)
'''

_ENV = {**os.environ, "GIT_AUTHOR_NAME": "Fixture", "GIT_AUTHOR_EMAIL": "fixture@example.com",
        "GIT_COMMITTER_NAME": "Fixture", "GIT_COMMITTER_EMAIL": "fixture@example.com"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=_ENV).stdout


def make_patch(repo: Path, changes: dict[str, str]) -> str:
    """The diff `changes` ({path: new content}) make to `repo`'s HEAD; the repo is left clean."""
    for rel, content in changes.items():
        target = repo / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    _git(repo, "add", "--all")
    diff = _git(repo, "diff", "--cached", "--no-color", "HEAD")
    _git(repo, "reset", "--hard", "-q", "HEAD")
    _git(repo, "clean", "-fdxq")
    return diff


RUN_TESTS_SH = '''#!/bin/bash
# run_tests.sh <repo_path> <tests.patch> [feature.patch]: apply the patches, run the suite, clean up.
set -e
REPO_PATH="$1"
TEST_PATCH="$2"
FEATURE_PATCH="$3"
[[ -z "$REPO_PATH" || -z "$TEST_PATCH" ]] && { echo "usage: $0 <repo> <tests.patch> [feature.patch]"; exit 2; }
cd "$REPO_PATH"
cleanup() { git reset --hard -q HEAD; git clean -fdxq; }
trap cleanup EXIT
git apply "$TEST_PATCH"
if [[ -n "$FEATURE_PATCH" ]]; then git apply "$FEATURE_PATCH"; fi
# like CooperBench's scripts: only the test files the tests.patch touches
TEST_FILES=$(git apply --numstat "$TEST_PATCH" | cut -f3 | grep '[.]py$')
PYTHONDONTWRITEBYTECODE=1 "{python}" -m pytest -q -p no:cacheprovider $TEST_FILES
'''

# What CooperBench's Python tasks do: a fresh env made with `uv venv`, the test tools installed
# with `uv pip install` from whatever index the environment names (UV_INDEX_URL, proxies, CA bundle).
UV_RUN_TESTS_SH = '''#!/bin/bash
set -e
REPO_PATH="$1"
TEST_PATCH="$2"
FEATURE_PATCH="$3"
cd "$REPO_PATH"
cleanup() { git reset --hard -q HEAD; git clean -fdxq; }
trap cleanup EXIT
git apply "$TEST_PATCH"
if [[ -n "$FEATURE_PATCH" ]]; then git apply "$FEATURE_PATCH"; fi
uv venv --python "{python}" .venv
source .venv/bin/activate
uv pip install pytest
TEST_FILES=$(git apply --numstat "$TEST_PATCH" | cut -f3 | grep '[.]py$')
python -m pytest -q -p no:cacheprovider $TEST_FILES
'''

RUNNER_SH = '''#!/bin/bash
set -e
TEST_PATCH="$1"
FEATURE_PATCH="$2"
cd /workspace/repo
git reset --hard HEAD
git clean -fdx
git apply "/patches/$TEST_PATCH"
if [[ -n "$FEATURE_PATCH" ]]; then git apply "/patches/$FEATURE_PATCH"; fi
pip install -e .
python -m pytest -v tests/test_ops.py
'''


def make_task(tmp: Path, with_run_tests: bool = True, run_tests: str = RUN_TESTS_SH) -> Task:
    """Build the fixture task under `tmp` and return it loaded (its setup.sh clones a local path).

    `run_tests` is the run_tests.sh template (`{python}` is this interpreter)."""
    repo = tmp / "calc-upstream"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    for rel, content in {"calc/__init__.py": "", "calc/ops.py": BASE_OPS, "tests/test_ops.py": BASE_TESTS,
                         ".gitignore": "__pycache__/\n*.pyc\n"}.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(content)
    _git(repo, "add", "--all")
    _git(repo, "commit", "-q", "-m", "calc: base")
    base = _git(repo, "rev-parse", "HEAD").strip()

    task_dir = tmp / "dataset" / "calc_task" / "task1"
    task_dir.mkdir(parents=True)
    (task_dir / "setup.sh").write_text(
        f'#!/bin/bash\nset -e\nREPO_NAME="calc"\nBASE_COMMIT="{base}"\n'
        f'git clone "{repo}" "$REPO_NAME"\ncd "$REPO_NAME"\ngit checkout "$BASE_COMMIT"\n')
    (task_dir / "runner.sh").write_text(RUNNER_SH)
    (task_dir / "Dockerfile").write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y git\n"
                                         "COPY runner.sh /usr/local/bin/runner.sh\n"
                                         'ENTRYPOINT ["/usr/local/bin/runner.sh"]\n')
    if with_run_tests:
        (task_dir / "run_tests.sh").write_text(run_tests.replace("{python}", sys.executable))
    for number, (title, source, tests) in FEATURES.items():
        folder = task_dir / f"feature{number}"
        folder.mkdir()
        (folder / "feature.md").write_text(
            f"**Title**: {title}\n\n**Pull Request Details**\n**Description**: {title}.\n\n"
            f"**Technical Background**: fixture.\n\n**Solution**: fixture.\n\n**Files Modified**\n"
            + "".join(f"- `{p}`\n" for p in source))
        (folder / "feature.patch").write_text(make_patch(repo, source))
        (folder / "tests.patch").write_text(make_patch(repo, tests))
    return load_task(task_dir)


def upstream(task: Task) -> Path:
    """The fixture's base repository (what setup.sh clones)."""
    return Path(task.repo_url or "")


def pair(task: Task, name: str) -> tuple[str, str]:
    """(feature.patch, tests.patch) text of one of PAIRS, built against the task's base."""
    source, tests = PAIRS[name]
    return make_patch(upstream(task), source), make_patch(upstream(task), tests)
