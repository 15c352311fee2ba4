"""Every test file is in a layer (issue 18): `make unit`, `make integration` and `make e2e` select by
marker, so a file without one silently runs in no layer target."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

LAYERS = {"unit", "integration", "e2e", "faults"}
TESTS = Path(__file__).resolve().parents[1]


def _layers(node: ast.AST) -> set[str]:
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute) and n.attr in LAYERS}


def layers_of(path: Path) -> set[str]:
    """The layer a test module is in (pure: read from its source): what its `pytestmark` names, or,
    for a contract suite run against several implementations, the layer of every `pytest.param`
    (each implementation in its own layer); empty when that is not one clear answer."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets) and node.value is not None:
            found |= _layers(node.value)
    if found:
        return found if len(found) == 1 else set()
    params = [element for n in ast.walk(tree) if isinstance(n, ast.Call)
              for kw in n.keywords if kw.arg == "params" and isinstance(kw.value, ast.List | ast.Tuple)
              for element in kw.value.elts]

    def layered(element: ast.AST) -> bool:
        marks = [kw.value for kw in getattr(element, "keywords", []) if kw.arg == "marks"]
        return (isinstance(element, ast.Call) and isinstance(element.func, ast.Attribute)
                and element.func.attr == "param" and len(marks) == 1 and len(_layers(marks[0])) == 1)

    return {"contract"} if params and all(layered(e) for e in params) else set()


def test_every_test_file_names_exactly_one_layer():
    files = sorted(TESTS.rglob("test_*.py"))
    assert len(files) > 50
    missing = [str(f.relative_to(TESTS)) for f in files if not layers_of(f)]
    assert missing == [], f"test files in no layer (one marker in pytestmark, or one per pytest.param): {missing}"


def test_the_rule_reads_markers_from_source(tmp_path):
    marked = tmp_path / "test_a.py"
    marked.write_text("import pytest\npytestmark = [pytest.mark.integration, pytest.mark.timeout(5)]\n")
    unmarked = tmp_path / "test_b.py"
    unmarked.write_text("import pytest\n\n@pytest.mark.unit\ndef test_x():\n    pass\n")
    contract = tmp_path / "test_c.py"
    contract.write_text("import pytest\n@pytest.fixture(params=[pytest.param(1, marks=pytest.mark.unit),\n"
                        "                        pytest.param(2, marks=pytest.mark.integration)])\ndef f(): ...\n")
    half = tmp_path / "test_d.py"
    half.write_text("import pytest\n@pytest.fixture(params=[pytest.param(1, marks=pytest.mark.unit), 2])\ndef f(): ...\n")
    assert layers_of(marked) == {"integration"}
    assert layers_of(unmarked) == set()
    assert layers_of(contract) == {"contract"}
    assert layers_of(half) == set()
