"""Parsing Python: one lock for the whole process, and every failure a SyntaxError with a reason."""

from __future__ import annotations

import threading

import pytest

from shared.common.pyparse import parse_error, parse_python
from shared.engines.rules.facts import parse_module

pytestmark = pytest.mark.unit

# Deep nesting makes the AST constructor recurse, which is where CPython 3.11 trips when threads overlap.
NESTED = "x = " + "[" * 80 + "1" + "]" * 80 + "\n" + "".join(f"def f{i}(a):\n    return (a + {i}) * 2\n" for i in range(200))


def test_parsing_from_many_threads_at_once_never_crashes():
    import sys

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, mid-parse
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(30):
                parse_python(NESTED, "nested.py")
        except BaseException as exc:  # noqa: BLE001 - any exception is the failure under test
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.setswitchinterval(previous)
    assert errors == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [("def broken(:\n", "invalid syntax"), ("x = 1\0\n", "null bytes"), ("x = " + "(" * 5000 + ")" * 5000, "nested")],
)
def test_unparsable_sources_are_syntax_errors_with_reasons(source, reason):
    with pytest.raises(SyntaxError, match=reason):
        parse_python(source, "bad.py")
    assert parse_error(source, "bad.py")


def test_an_unparsable_module_is_a_fact_not_a_crash():
    module = parse_module("pkg/bad.py", "x = 1\0\n")
    assert module.parse_error and "null bytes" in module.parse_error
    assert module.functions == []
