"""The composition root: wires real dependencies for every service (cosmicpython's bootstrap)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.engines.base import Engine, StepError
from shared.pipeline import RunContext, replay_answers
from shared.settings import Settings


@dataclass
class Deps:
    settings: Settings
    store: Any  # PostgresEventStore
    workspace: Any  # shared.workspace.Workspace
    sandbox: Any  # shared.sandbox.Sandbox
    make_engine: Callable[[RunContext, list], Engine]
    make_forge: Callable[[str, str], Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def engine(self, ctx: RunContext, replay_from: list | None = None) -> Engine:
        return _RecordsCallsOnFailure(self.make_engine(ctx, replay_from or []), self.store, ctx.run_id)


class _RecordsCallsOnFailure:
    """The engine, except that when a step fails with StepError the model calls made so far are
    appended to the run's stream before the error propagates.

    The consumer records a StepError as StepFailed + PipelineFailed only; the handler never gets
    to emit the engine's drained calls, so the calls that caused the failure (429 storms, junk
    answers) would be lost from the log — and they are what a user needs to see."""

    _STEPS = frozenset({"analyze", "suggest", "implement", "review", "write_tests"})

    def __init__(self, engine: Engine, store: Any, stream_id: str):
        self._engine, self._store, self._stream_id = engine, store, stream_id

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if name not in self._STEPS:
            return attr

        async def step(*args: Any, **kwargs: Any) -> Any:
            try:
                return await attr(*args, **kwargs)
            except StepError:
                calls = self._engine.drain_calls()
                if calls:
                    from shared.events import make_event

                    await self._store.append(self._stream_id, [make_event(c, self._stream_id) for c in calls])
                raise

        return step


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
    from shared.forge import make_forge
    from shared.sandbox import make_sandbox
    from shared.workspace import Workspace

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
