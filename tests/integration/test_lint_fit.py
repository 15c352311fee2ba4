"""ruff's fixes land only where the result is what the project would accept: pyupgrade's f-string
fix (UP032) made a 91-character line in toolz (79 columns, no checker configured) and put an
f-string into an implicit concatenation in more-itertools. Those sites are left as is; the
file's other sites are still fixed. Real ruff, real git."""

from __future__ import annotations

import pytest

from shared.engines.rules.engine import RulesEngine
from shared.engines.rules.lint import fix_misfits
from shared.events import Improvement
from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration

# 79 columns by convention: every line of the package fits
NARROW = "".join(f"def helper_{i}(value):\n    return value + {i}\n\n\n" for i in range(40))
FORMATS = """\
def describe(name, n):
    short = 'a {} b'.format(n)
    wide = 'the function called {} was given too many arguments: {}'.format(
        name.upper(), n)
    if n < 1:
        raise ValueError('function {} takes at least '
                         '1 argument ({} given)'.format(name, n))
    return short, wide
"""


def _up032(files):
    return Improvement(id="features-lint-up", category="features", title="Modernise", rationale="r",
                       files=files, rule="lint:UP032", changes="-")  # fmt: skip


async def test_an_f_string_fix_that_would_overflow_or_join_strings_is_left_as_is(tmp_path):
    repo = make_git_repo(tmp_path / "narrow", {"narrow/__init__.py": "", "narrow/helpers.py": NARROW,
                                               "narrow/formats.py": FORMATS})  # fmt: skip
    done = await RulesEngine().implement(repo, _up032(["narrow/formats.py"]))

    text = (repo / "narrow" / "formats.py").read_text()
    assert "short = f'a {n} b'" in text  # the site that fits is fixed
    assert "'the function called {} was given too many arguments: {}'.format(\n        name.upper(), n)" in text
    assert "'1 argument ({} given)'.format(name, n)" in text and "f'function" not in text
    assert max(len(line) for line in text.splitlines()) <= 79
    assert "left as is where the result would not fit" in done.summary and "79 columns" in done.summary
    assert "left without a fix" not in done.summary  # the held sites are not counted twice
    assert "implicit concatenation" in done.summary


def test_misfits_are_new_long_lines_and_new_f_strings_in_concatenations():
    before = "x = ('a '\n     'b {}'.format(1))\ny = 'c {}'.format(2)\n"
    joined = "x = ('a '\n     f'b {1}')\ny = f'c {2}'\n"
    assert fix_misfits(before, joined, 79) == {1: "an f-string in an implicit concatenation"}
    assert fix_misfits(before, joined.replace("f'c {2}'", "f'c {2}'" + " " * 80), None) == fix_misfits(
        before, joined, None
    )
    long_before = "z = '{}'.format(1)  " + "#" * 70 + "\n"
    assert fix_misfits(long_before, "z = f'{1}'  " + "#" * 70 + "\n", 79) == {}  # shorter than it was
    assert fix_misfits("y = 'c {}'.format(2)\n", "y = f'c {2}'" + " " * 80 + "\n", 79) == {0: "a line over 79 columns"}


def test_the_projects_line_length_is_its_strictest_configured_checker_else_its_convention(tmp_path):
    from shared.adapters.project_tools import line_length

    configured = make_git_repo(tmp_path / "c", {
        "pyproject.toml": "[tool.ruff]\nline-length = 120\n[tool.black]\n",
        "setup.cfg": "[flake8]\nmax-line-length = 100\n", "a.py": "x = 1\n",
    })  # fmt: skip
    assert line_length(configured, ["a.py"]) == 88  # black configured without a length: its 88
    wide = make_git_repo(tmp_path / "w", {"a.py": "".join(f"x{i} = '{'y' * 90}'\n" for i in range(10))})
    assert line_length(wide, ["a.py"]) == 99  # 97-character lines
    narrow = make_git_repo(tmp_path / "n", {"a.py": NARROW})
    assert line_length(narrow, ["a.py"]) == 79
