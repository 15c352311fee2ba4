"""The mutator and the new-test finder of the generator's proofs (pure)."""

import ast

import pytest

from shared.policy.generation.mutate import all_mutants, spread
from shared.policy.generation.newtests import (
    Records,
    TestRecord,
    added_lines,
    failed_by_missing_name,
    new_tests,
)

pytestmark = pytest.mark.unit

SOURCE = '''def clamp(value, low=0, high=10):
    """Keep value within [low, high]."""
    if value < low:
        return low
    return min(value, high) * 1 + 0
'''


def test_mutants_touch_only_the_given_lines_and_all_parse():
    found = all_mutants("m.py", SOURCE, {3})
    assert {m.line for m in found} == {3}
    assert {m.description.split(": ", 1)[1] for m in found} == {"'<' -> '>='", "condition negated"}
    for m in found:
        ast.parse(m.source)
        assert "def clamp(" in m.source  # the name stays: only its body changes


def test_mutants_of_returns_operators_and_numbers_drop_the_unparsable_and_the_unchanged():
    found = all_mutants("m.py", SOURCE, {5})
    kinds = {m.description.split(": ", 1)[1] for m in found}
    assert {"return value -> None", "'*' -> '/'", "'+' -> '-'", "1 -> 2", "0 -> 1"} <= kinds
    assert all_mutants("m.py", "def f(*args):\n    return args\n", {1}) == []  # `/args` does not parse
    assert all_mutants("m.py", "x = (\n", {1}) == []  # a file that does not parse has no mutant


def test_spread_takes_one_per_line_first():
    found = all_mutants("m.py", SOURCE, {3, 4, 5})
    picked = spread(found, 3)
    assert [m.line for m in picked] == [3, 4, 5]
    assert len(spread(found, 100)) == len(found)


PATCH = """diff --git a/tests/test_ops.py b/tests/test_ops.py
--- a/tests/test_ops.py
+++ b/tests/test_ops.py
@@ -3,3 +3,7 @@ def test_add():
     assert add(2, 3) == 5
 
 
+def test_added():
+    assert add(1, 1) == 2
+
+
 def test_old():
diff --git a/tests/test_other.py b/tests/test_other.py
new file mode 100644
--- /dev/null
+++ b/tests/test_other.py
@@ -0,0 +1,2 @@
+def test_never_run():
+    assert True
"""


def _record(nodeid, lines, outcome="passed", exception=""):
    return TestRecord(nodeid, "/repo/" + nodeid.split("::")[0], nodeid.split("::")[1].split("[")[0], lines,
                      outcome, exception)


def test_new_tests_are_the_collected_ones_holding_an_added_line():
    assert added_lines(PATCH) == {"tests/test_ops.py": {6, 7, 8, 9}, "tests/test_other.py": {1, 2}}
    records = Records({r.nodeid: r for r in [
        _record("tests/test_ops.py::test_add", (1, 4)), _record("tests/test_ops.py::test_added[1]", (6, 7)),
        _record("tests/test_ops.py::test_added[2]", (6, 7)), _record("tests/test_ops.py::test_old", (10, 11))]})
    found = new_tests(records, PATCH)
    assert found.ids == ["tests/test_ops.py::test_added[1]", "tests/test_ops.py::test_added[2]"]
    assert found.not_run == ["tests/test_other.py::test_never_run"]


def test_a_failure_by_a_missing_name_is_told_from_one_by_assertion():
    ids = ["t.py::test_a"]
    assert failed_by_missing_name(Records({ids[0]: _record("t.py::test_a", (1, 2), "failed", "ImportError")}), ids)
    assert not failed_by_missing_name(Records({ids[0]: _record("t.py::test_a", (1, 2), "failed",
                                                               "AssertionError")}), ids)
    collection = Records({}, [{"nodeid": "t.py", "text": "E   ImportError: cannot import name 'x'"}])
    assert failed_by_missing_name(collection, ids)
    assert not failed_by_missing_name(Records({}, [{"nodeid": "t.py", "text": "E   ZeroDivisionError"}]), ids)
