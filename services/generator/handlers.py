"""The generator service's handlers: one step of an attempt per event, through the FeatureGenerator port.

FeatureGenerationRequested → FeaturePromptBuilt (bead `prompt`) → FeatureGenerated (`agent`) →
FeatureValidated (`validate`). Each handler finds the request (and the prompt) in the job's stream;
the consumer records the beads and turns a StepError into StepFailed + PipelineFailed.
"""

from __future__ import annotations

from typing import Protocol

from shared.events import Envelope
from shared.events.gen import FeatureGenerated, FeatureGenerationRequested, FeaturePromptBuilt
from shared.policy.run import emit
from shared.ports.deps import UsesStore
from shared.ports.generator import UsesGenerator

SERVICE = "generator"


class Uses(UsesGenerator, UsesStore, Protocol):
    """What the generator's handlers use: the generator (its three steps) and the store (the job's stream)."""


async def _earlier(deps: Uses, event: Envelope) -> tuple[FeatureGenerationRequested, FeaturePromptBuilt | None]:
    """The job's request and its prompt, from the stream the event is on."""
    found = {e.type: e.data for e in await deps.store.read_stream(event.stream_id)}
    return found["FeatureGenerationRequested"], found.get("FeaturePromptBuilt")


async def on_feature_generation_requested(event: Envelope, deps: Uses) -> list[Envelope]:
    return emit(event, SERVICE, await deps.generator.build_prompt(event.data))


async def on_feature_prompt_built(event: Envelope, deps: Uses) -> list[Envelope]:
    request, _ = await _earlier(deps, event)
    return emit(event, SERVICE, await deps.generator.generate(request, event.data))


async def on_feature_generated(event: Envelope, deps: Uses) -> list[Envelope]:
    request, prompt = await _earlier(deps, event)
    generated: FeatureGenerated = event.data
    return emit(event, SERVICE, await deps.generator.validate(request, prompt, generated))
