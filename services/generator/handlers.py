"""The generator service's handler: one attempt per FeatureGenerationRequested event.

No bus import here: the lead's subscriber parses the event and delegates. It uses
`deps.settings` (model endpoint and default model) and `deps.openai_client`, when set, as the
model client (tests hand in one pointed at the scripted server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from shared.adapters.task_dir import load_task
from shared.common.settings import Settings
from shared.engines.generator.attempt import GenerateOptions, run_attempt
from shared.events import Envelope, make_event
from shared.events.gen import FeatureGenerationRequested
from shared.events.run import PipelineFailed, StepCompleted, StepFailed, StepStarted
from shared.ports.deps import UsesModelClient, UsesSettings, UsesStore
from shared.ports.errors import StepError
from shared.store.projections import GEN_STEPS  # the job's beads

SERVICE = "generator"


class Uses(UsesSettings, UsesModelClient, UsesStore, Protocol):
    """What the generator's handlers use: the settings (model endpoint), the model client and the
    store (each generation step's StepStarted is appended as it begins)."""


def options_for(request: FeatureGenerationRequested, settings: Settings) -> GenerateOptions:
    """The attempt's options: the request's values, the endpoint and default model from settings (pure)."""
    return GenerateOptions(
        repo_path=request.repo_path, model=request.model or settings.openai_model, backend=request.backend,
        feature=request.feature, step_limit=request.step_limit, cost_limit_usd=request.cost_limit_usd,
        min_conflicts=request.min_conflicts, base_url=settings.openai_base_url, api_key=settings.openai_api_key,
        agent_network=request.agent_network, uv_cache_dir=settings.home / "uv-cache")


async def on_feature_generation_requested(event: Envelope, deps: Uses) -> list[Envelope]:
    """FeaturePromptBuilt, FeatureGenerated, FeatureValidated for one attempt; StepFailed on the
    generation step that could not run (bad task dir: prompt; no repository or model endpoint:
    agent) and PipelineFailed when the request cannot be carried out.

    Each step's StepStarted is appended as the step begins (when `deps.store` is there), so a
    follower sees the job's beads go RUNNING live."""
    request = event.data
    assert isinstance(request, FeatureGenerationRequested), f"not a generation request: {event.type}"

    def emit(payload) -> Envelope:
        return make_event(payload, event.stream_id, cause=event, service=SERVICE)

    current = GEN_STEPS[0]
    store = getattr(deps, "store", None)

    async def step(name: str) -> None:
        nonlocal current
        previous, current = current, name
        if store is not None:
            done = [emit(StepCompleted(step=previous))] if previous != name else []
            await store.append(event.stream_id, [*done, emit(StepStarted(step=name, attempt=request.attempt))])

    client = getattr(deps, "openai_client", None)
    folder = Path(request.output_dir) / f"attempt_{request.attempt}"
    try:
        task = load_task(Path(request.task_dir))
        result = await run_attempt(task, options_for(request, deps.settings), folder, request.attempt, client,
                                   on_step=step)
    except StepError as exc:
        error = exc.message + (f" ({exc.hint})" if exc.hint else "")
        return [emit(StepFailed(step=current, error=error, attempt=request.attempt)),
                emit(PipelineFailed(step=current, error=exc.message, hint=exc.hint))]
    return [emit(result.prompt), emit(result.generated_payload()), emit(result.validated_payload())]
