"""Reading a repository's facts does not load the rules engine (sandbox, codemods, ghostwriter):
the analyzer's scan paid 2–3 s per process for it. The engine still loads on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def _loaded_after(code: str) -> bool:
    probe = f"import sys; {code}; print('shared.engines.rules.engine' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.strip() == "True"


def test_facts_and_scan_do_not_load_the_engine():
    assert not _loaded_after("from shared.engines.rules import facts; import shared.engines.scan")


def test_the_engine_loads_when_it_is_asked_for():
    assert _loaded_after("from shared.engines.rules import RulesEngine")
    assert _loaded_after("import shared.engines.rules as r; r.collect_findings")


def test_an_unknown_name_is_still_an_attribute_error():
    import shared.engines.rules as rules

    with pytest.raises(AttributeError):
        rules.no_such_name  # noqa: B018
