"""RulesEngine: the offline, deterministic Engine (DESIGN section 4), built on ruff, bandit and templates."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from shared.adapters.analyzers import (
    DEFAULT_SELECT,
    Finding,
    bandit_only,
    run_bandit,
    run_ruff,
    scan_secrets,
    target_version,
)
import shared.engines.rules.facts as facts_mod
from shared.engines.rules.analyze import analyze_facts
from shared.engines.rules.implement import implement as implement_improvement
from shared.engines.rules.suggest import suggest_all
from shared.engines.rules.tests import generate
from shared.events import Improvement
from shared.events.run import CATEGORIES, LlmCallRecorded
from shared.ports.engine import Analysis, GeneratedTests, Implementation, ModelReview
from shared.ports.errors import StepError


def collect_findings(repo: Path, facts: facts_mod.RepoFacts) -> list[Finding]:
    """ruff (DEFAULT_SELECT), bandit where it adds to ruff, and the secrets scan, sorted."""
    py = facts.python_files
    ruff = run_ruff(repo, py, DEFAULT_SELECT, target_version(facts.requires_python))
    bandit = bandit_only(run_bandit(repo, py), ruff)
    return sorted([*ruff, *bandit, *scan_secrets(repo, facts.files)])


class RulesEngine:
    """Same repository in, same analysis, suggestions, fixes and tests out; no model, no network."""

    name = "rules"

    def __init__(self) -> None:
        # Why a category came back empty (e.g. no feature can be derived without a model), by category.
        self.notes: dict[str, str] = {}

    async def analyze(self, repo: Path) -> Analysis:
        return await asyncio.to_thread(lambda: analyze_facts(facts_mod.collect(Path(repo))))

    async def suggest(self, repo: Path, analysis: Analysis, categories: list[str]) -> list[Improvement]:
        unknown = sorted(set(categories) - set(CATEGORIES))
        if unknown:
            raise StepError(f"unknown categories {unknown}", hint=f"choose from {', '.join(CATEGORIES)}")

        def run() -> list[Improvement]:
            facts = facts_mod.collect(Path(repo))
            improvements, notes = suggest_all(facts, collect_findings(facts.root, facts), list(categories))
            self.notes = notes
            return improvements

        return await asyncio.to_thread(run)

    async def implement(self, repo: Path, improvement: Improvement) -> Implementation:
        return await asyncio.to_thread(implement_improvement, Path(repo), improvement)

    async def review(self, repo: Path, base_sha: str, head_sha: str, signals: dict[str, Any]) -> ModelReview:
        """A review from the signals alone (and `signals["tests"]`, a TestsCompleted dict, when present)."""
        from shared.policy.review import signal_assessment, signals_summary

        a = signal_assessment(signals, signals.get("tests"))
        return ModelReview(
            overall=a["score"],
            scores=a["scores"],
            issues=a["issues"],
            summary=signals_summary(a),
            samples=[a["score"]],
        )

    async def write_tests(
        self, repo: Path, improvements: list[Improvement], categories: list[str]
    ) -> GeneratedTests:
        return await asyncio.to_thread(
            lambda: generate(facts_mod.collect(Path(repo)), improvements, categories)
        )

    def drain_calls(self) -> list[LlmCallRecorded]:
        return []
