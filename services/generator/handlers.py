"""The generator service's handler: one attempt per FeatureGenerationRequested event.

No bus import here: the lead's subscriber parses the event and delegates. It uses
`deps.settings` (model endpoint and default model) and `deps.openai_client`, when set, as the
model client (tests hand in one pointed at the scripted server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from services.generator.job import GenerateOptions, run_attempt
from services.generator.task import load_task
from shared.events import Envelope, make_event
from shared.events.gen import FeatureGenerationRequested
from shared.events.run import PipelineFailed, StepFailed
from shared.common.settings import Settings
from shared.ports.deps import UsesSettings, UsesModelClient
from shared.ports.errors import StepError

SERVICE = "generator"


class Uses(UsesSettings, UsesModelClient, Protocol):
    """What the generator's handlers use: the settings (model endpoint) and the model client."""


def options_for(request: FeatureGenerationRequested, settings: Settings) -> GenerateOptions:
    """The attempt's options: the request's values, the endpoint and default model from settings (pure)."""
    return GenerateOptions(
        repo_path=request.repo_path, model=request.model or settings.openai_model, backend=request.backend,
        feature=request.feature, step_limit=request.step_limit, cost_limit_usd=request.cost_limit_usd,
        min_conflicts=request.min_conflicts, base_url=settings.openai_base_url, api_key=settings.openai_api_key)


async def on_feature_generation_requested(event: Envelope, deps: Uses) -> list[Envelope]:
    """FeaturePromptBuilt, FeatureGenerated, FeatureValidated for one attempt; StepFailed when the
    request cannot run at all (bad task dir, no repository, no model endpoint)."""
    request = event.data
    assert isinstance(request, FeatureGenerationRequested), f"not a generation request: {event.type}"

    def emit(payload) -> Envelope:
        return make_event(payload, event.stream_id, cause=event, service=SERVICE)

    client = deps.openai_client
    folder = Path(request.output_dir) / f"attempt_{request.attempt}"
    try:
        task = load_task(Path(request.task_dir))
        result = await run_attempt(task, options_for(request, deps.settings), folder, request.attempt, client)
    except StepError as exc:
        error = exc.message + (f" ({exc.hint})" if exc.hint else "")
        return [emit(StepFailed(step="generate", error=error, attempt=request.attempt)),
                emit(PipelineFailed(step="generate", error=exc.message, hint=exc.hint))]
    return [emit(result.prompt), emit(result.generated_payload()), emit(result.validated_payload())]
