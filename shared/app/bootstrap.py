"""The composition root: wires real dependencies for every service (cosmicpython's bootstrap)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.common.settings import Settings
from shared.policy.run import RunContext, replay_answers
from shared.ports.deps import Deps
from shared.ports.engine import Engine


def real_engine_factory(settings: Settings, **llm_options: Any) -> Callable[[RunContext, list], Engine]:
    """Engines per run: `llm` on the configured endpoint (budget = what the run has left),
    else the offline rules engine. `llm_options` go to `LlmEngine` (e.g. a fast `retry` in tests)."""

    clients: list = []  # one HTTP client for every run this process handles, made on first use

    def make(ctx: RunContext, previous_calls: list) -> Engine:
        if ctx.engine == "llm":
            import openai

            from shared.engines.llm import Budget, LlmEngine

            if not clients:
                clients.append(openai.AsyncOpenAI(
                    api_key=settings.openai_api_key or "not-needed",
                    base_url=settings.openai_base_url,
                    max_retries=0,  # retries are the engine's (tenacity), so each attempt is recorded
                ))
            client = clients[0]
            budget = Budget(
                max_tokens=max(0, settings.run_token_budget - ctx.tokens_spent),
                max_cost_usd=max(0.0, settings.run_cost_budget_usd - ctx.cost_spent),
            )
            return LlmEngine(
                client, settings.openai_model, budget, replay=replay_answers(previous_calls), **llm_options
            )
        from shared.engines.rules import RulesEngine

        return RulesEngine()

    return make


def bootstrap(settings: Settings, store: Any, **overrides: Any) -> Deps:
    """Real dependencies; tests pass overrides (e.g. a different engine factory) into the same wiring."""
    from shared.adapters.forge import make_forge
    from shared.adapters.sandbox import make_sandbox
    from shared.adapters.workspace import Workspace

    deps = Deps(
        settings=settings,
        store=store,
        workspace=Workspace(settings.home),
        sandbox=make_sandbox("auto"),
        make_engine=real_engine_factory(settings),
        make_forge=lambda kind, target: make_forge(kind, target, settings),
    )
    for name, value in overrides.items():
        setattr(deps, name, value)
    return deps
