"""docs/architecture.md stays true: every dotted name it cites imports."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
NAME = re.compile(r"`((?:shared|services)(?:\.[A-Za-z_]\w*)+)`")


def resolve(dotted: str) -> object:
    """The object a dotted name refers to: modules imported as needed, then attributes."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        if isinstance(obj, ModuleType) and not hasattr(obj, part):
            importlib.import_module(".".join(parts[:i]))  # a submodule not imported yet
        obj = getattr(obj, part)
    return obj


def cited() -> list[str]:
    return sorted(set(NAME.findall(DOC.read_text())))


def test_the_doc_cites_the_whole_flow():
    names = cited()
    assert len(names) > 40
    for hop in ("shared.app.cli.run", "shared.messaging.relay.Relay.run",
                "services.merger.handlers.on_changes_reviewed", "services.analyzer.handlers.on_merge_completed"):
        assert hop in names


@pytest.mark.parametrize("dotted", cited())
def test_every_cited_name_imports(dotted):
    assert resolve(dotted) is not None


def test_a_stale_name_is_caught():
    with pytest.raises(AttributeError):
        resolve("shared.store.postgres.PostgresEventStore.no_such_method")
    with pytest.raises(ModuleNotFoundError):
        resolve("shared.no_such_package.thing")
