"""A scripted model conversation for a whole pipeline run on the `calc` fixture repository.

`make_calc_repo(path)` builds a small real git repository with its own pytest suite;
`script_happy_path(server, ...)` teaches a `ScriptedModelServer` every answer a run over it
needs: the analysis docs, 2 improvements per category, search/replace edits for each (written
against the fixture's exact text, on separate files so their commits never conflict), review
scores and generated tests. Tests change one part of the conversation by adding their own rules
first (`overrides`): the server tries rules in order.

The edits keep ruff's findings flat (the reviewer blocks a change whose findings grow) and keep
the repository's own tests green.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from shared.ports.engine import REVIEW_DIMENSIONS
from tests.conftest import make_git_repo
from tests.support.model_server import Reply, ScriptedModelServer

CATEGORIES = ("security", "compliance")

CORE = '''"""A tiny calculator."""


def add(a, b):
    return a + b


def sub(a, b):
    return a - b


def div(a, b):
    return a / b
'''

CALC_FILES = {
    "README.md": "# calc\n\nA tiny calculator library.\n",
    "pyproject.toml": '[project]\nname = "calc"\nversion = "0.1.0"\n',
    "calc/__init__.py": '"""calc: add, sub, div."""\n',
    "calc/core.py": CORE,
    "tests/__init__.py": "",
    "tests/test_core.py": (
        "from calc.core import add, div, sub\n\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n\n"
        "def test_sub():\n    assert sub(3, 1) == 2\n\n\n"
        "def test_div():\n    assert div(6, 3) == 2\n"
    ),
}

DOCS = {
    "specification": "# Specification\n\ncalc is a tiny calculator library: add, sub, div.\n",
    "graph": "# Graph\n\n- calc.core (no dependencies)\n- tests.test_core -> calc.core\n",
    "architecture": "# Architecture\n\nOne module, `calc/core.py`, tested with pytest.\n",
}

IDEAS = {
    "security": [
        {
            "title": "Refuse division by zero clearly",
            "rationale": "div raises a bare ZeroDivisionError",
            "files": ["calc/core.py"],
            "changes": "raise ValueError with a message when b == 0",
        },
        {
            "title": "Add a security policy",
            "rationale": "reporters need to know where to go",
            "files": ["SECURITY.md"],
            "changes": "create SECURITY.md",
        },
    ],
    "compliance": [
        {
            "title": "Add a license",
            "rationale": "the project states no license",
            "files": ["LICENSE"],
            "changes": "create an MIT LICENSE file",
        },
        {
            "title": "Declare the public API",
            "rationale": "an explicit __all__ documents the interface",
            "files": ["calc/__init__.py"],
            "changes": "add __all__ to calc/__init__.py",
        },
    ],
}

DIV_GUARD = {
    "path": "calc/core.py",
    "search": "def div(a, b):\n    return a / b\n",
    "replace": 'def div(a, b):\n    if b == 0:\n        raise ValueError("cannot divide by zero")\n    return a / b\n',
}
# Breaks the repository's own test_add (the function its tests check).
BREAK_ADD = {
    "path": "calc/core.py",
    "search": "def add(a, b):\n    return a + b\n",
    "replace": "def add(a, b):\n    return a - b\n",
}

EDITS = {
    "security-1": [DIV_GUARD],
    "security-2": [
        {
            "path": "SECURITY.md",
            "search": "",
            "replace": "# Security policy\n\nReport vulnerabilities to security@example.com.\n",
        }
    ],
    "compliance-1": [
        {"path": "LICENSE", "search": "", "replace": "MIT License\n\nCopyright (c) calc authors\n"}
    ],
    "compliance-2": [
        {
            "path": "calc/__init__.py",
            "search": '"""calc: add, sub, div."""\n',
            "replace": '"""calc: add, sub, div."""\n\n__all__ = ["core"]\n',
        }
    ],
}

TESTS = {
    "security": "import pytest\n\nfrom calc.core import div\n\n\n"
    "def test_div_by_zero_is_refused():\n    with pytest.raises(ValueError):\n        div(1, 0)\n",
    "compliance": "import calc\n\n\ndef test_public_api_is_declared():\n    assert calc.__all__ == ['core']\n",
}


def make_calc_repo(path: Path) -> Path:
    """The fixture repository, committed on `main`, with a passing pytest suite."""
    return make_git_repo(path, CALC_FILES)


def edits(*blocks: dict, summary: str = "done") -> str:
    return json.dumps({"edits": list(blocks), "summary": summary})


def review(overall: float, issues: Iterable[str] = ()) -> str:
    return json.dumps(
        {
            "scores": {d: overall for d in REVIEW_DIMENSIONS},
            "overall": overall,
            "issues": list(issues),
            "summary": f"scripted review {overall}",
        }
    )


def purpose(name: str) -> str:
    """The rule match for one kind of call (every system prompt starts with this line)."""
    return f"PURPOSE: {name}\n"


def script_happy_path(
    server: ScriptedModelServer,
    categories: Iterable[str] = CATEGORIES,
    *,
    review_score: float = 9,
    overrides: Mapping[str, Reply] | None = None,
) -> ScriptedModelServer:
    """Script every answer of a run on the calc repository that applies 2 improvements per
    category. `overrides` (purpose -> reply, e.g. {"review": Fault.status(429)}) come first."""
    for name, reply in (overrides or {}).items():
        server.add(purpose(name), reply)
    server.add(purpose("analyze"), json.dumps(DOCS))
    for category in categories:
        server.add(purpose(f"suggest:{category}"), json.dumps({"improvements": IDEAS[category]}))
        for n in range(1, len(IDEAS[category]) + 1):
            server.add(purpose(f"implement:{category}-{n}"), edits(*EDITS[f"{category}-{n}"]))
        server.add(
            purpose(f"write_tests:{category}"),
            json.dumps({"path": f"tests/repo_pilot/test_{category}.py", "content": TESTS[category]}),
        )
    server.add(purpose("review"), review(review_score))
    return server
