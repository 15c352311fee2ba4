"""The `rules` engine: offline and deterministic, built on ruff, bandit and templates (DESIGN section 4)."""

from shared.engines.rules.engine import RulesEngine, collect_findings

__all__ = ["RulesEngine", "collect_findings"]
