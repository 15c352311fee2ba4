"""The FeatureGenerator port: the generator's three steps, each from the events before it.

The generator service's handlers call it once per delivery; the consumer records each step's bead
(`prompt`, `agent`, `validate`). A step raises StepError for what the user must fix (no task
directory, no repository, no model endpoint); an attempt that fails is a result, not an error.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from shared.events.gen import FeatureGenerated, FeatureGenerationRequested, FeaturePromptBuilt, FeatureValidated


@runtime_checkable
class FeatureGenerator(Protocol):
    async def build_prompt(self, request: FeatureGenerationRequested) -> FeaturePromptBuilt:
        """The agent's prompt for the request's task (hot spots of its features)."""
        ...

    async def generate(self, request: FeatureGenerationRequested, prompt: FeaturePromptBuilt) -> FeatureGenerated:
        """The agent's feature and tests, split from its diff (trajectory in the attempt folder)."""
        ...

    async def validate(self, request: FeatureGenerationRequested, prompt: FeaturePromptBuilt,
                       generated: FeatureGenerated) -> FeatureValidated:
        """Tests, proofs and merges of the generated pair; writes the attempt folder."""
        ...


@runtime_checkable
class UsesGenerator(Protocol):
    generator: FeatureGenerator
