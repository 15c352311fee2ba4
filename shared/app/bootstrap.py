"""The composition root: wires real dependencies for every service (cosmicpython's bootstrap)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.adapters.changes import GitChanges
from shared.adapters.forge import make_forge as real_forge
from shared.adapters.run_log import FileRunLog
from shared.adapters.sandbox import make_sandbox
from shared.adapters.signals import StaticSignals
from shared.adapters.workspace import Workspace as RealWorkspace
from shared.common.settings import Settings
from shared.engines.suites import SandboxSuites
from shared.events.run import LlmCallRecorded
from shared.policy.run import RunContext, replay_answers
from shared.ports.deps import Deps, EngineFactory, ForgeFactory
from shared.ports.engine import Engine
from shared.ports.generator import FeatureGenerator
from shared.ports.sandbox import Sandbox
from shared.ports.store import EventStore
from shared.ports.workspace import Workspace

if TYPE_CHECKING:
    import openai


def real_engine_factory(settings: Settings, sandbox: Sandbox | None = None, **llm_options: Any) -> EngineFactory:
    """Engines per run: `llm` on the configured endpoint, else the offline rules engine, which
    validates fixes in `sandbox` (default: the one the settings configure, as `bootstrap` wires).
    `llm_options` go to `LlmEngine` (e.g. a fast `retry` in tests).

    One HTTP client and one endpoint record (structured-output mode, concurrency limit) serve
    every run of the process; one budget ledger per run is shared by all its engines here, so
    concurrent steps of a run reserve against the same budget."""

    clients: list = []  # one HTTP client for every run this process handles, made on first use
    sandboxes: list = []  # the rules engine's, made on first use when none is handed in
    ledgers: dict[str, Any] = {}

    def make(ctx: RunContext, previous_calls: list[LlmCallRecorded]) -> Engine:
        if ctx.engine == "llm":
            import openai

            from shared.engines.llm import Budget, Ledger, LlmEngine, endpoint_for

            if not clients:
                clients.append(openai.AsyncOpenAI(
                    api_key=settings.openai_api_key or "not-needed",
                    base_url=settings.openai_base_url,
                    max_retries=0,  # retries are the engine's (tenacity), so each attempt is recorded
                ))
            ledger = ledgers.setdefault(ctx.run_id, Ledger(Budget(
                max_tokens=settings.run_token_budget, max_cost_usd=settings.run_cost_budget_usd)))
            ledger.catch_up(ctx.tokens_spent, ctx.cost_spent)  # what other processes spent
            options = {"endpoint": endpoint_for(settings), "answer_cap": settings.llm_answer_tokens,
                       **llm_options}
            return LlmEngine(
                clients[0], settings.openai_model, ledger=ledger, replay=replay_answers(previous_calls), **options
            )
        from shared.engines.rules import RulesEngine

        if not sandboxes:
            sandboxes.append(sandbox or make_sandbox("auto", isolation=settings.isolation))
        return RulesEngine(home=settings.home, tools_home=settings.tools_home, sandbox=sandboxes[0])

    return make


def _generator(settings: Settings, client: openai.AsyncOpenAI | None) -> FeatureGenerator:
    # Imported here: the engine brings the openai SDK, which commands that run no service skip.
    from shared.engines.generator.attempt import Generator

    return Generator(settings, client)


def bootstrap(
    settings: Settings,
    store: EventStore,
    *,
    workspace: Workspace | None = None,
    sandbox: Sandbox | None = None,
    make_engine: EngineFactory | None = None,
    make_forge: ForgeFactory | None = None,
    openai_client: openai.AsyncOpenAI | None = None,
    generator: FeatureGenerator | None = None,
) -> Deps:
    """Real dependencies; a test hands in any of them (e.g. a different engine factory) by keyword
    and gets the rest of the same wiring. `openai_client` is the generator agent's model client
    (default: one from the settings' endpoint)."""
    sandbox = sandbox or make_sandbox("auto", isolation=settings.isolation)
    return Deps(
        settings=settings,
        store=store,
        workspace=workspace or RealWorkspace(settings.home),
        sandbox=sandbox,
        make_engine=make_engine or real_engine_factory(settings, sandbox),
        make_forge=make_forge or (lambda kind, target: real_forge(kind, target, settings)),
        changes=GitChanges(sandbox),  # the project's own checks run in the configured sandbox
        signals=StaticSignals(),
        suites=SandboxSuites(sandbox, settings.home),
        run_log=FileRunLog(store, settings.runs_dir),
        generator=generator or _generator(settings, openai_client),
    )
