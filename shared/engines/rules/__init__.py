"""The `rules` engine: offline and deterministic, built on ruff, bandit and templates (DESIGN section 4).

`RulesEngine` and `collect_findings` load on first use (PEP 562): importing a submodule such as
`shared.engines.rules.facts` (the analyzer's reading of a repository) must not pull in the whole
engine — sandbox, codemods, ghostwriter — which cost 2–3 s per process in the scan benchmark."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.engines.rules.engine import RulesEngine, collect_findings

__all__ = ["RulesEngine", "collect_findings"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from shared.engines.rules import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
