"""Payloads of the generation job stream (`gen-<uuid>`), DESIGN section 2."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.registry import Payload, event


# How hard the new tests are checked by default: mutants of the feature's added lines they must
# kill, and the share of them. One home for the CLI, the request and the engine.
DEFAULT_MUTANTS, DEFAULT_MIN_MUTATION_SCORE = 6, 0.5


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)  # as Payload's


@event("gen")
class FeatureGenerationRequested(Payload):
    task_dir: str
    repo_path: str | None = None
    attempt: int = 1
    output_dir: str
    model: str | None = None
    backend: Literal["docker", "local", "auto"] = "auto"
    step_limit: int = 30
    cost_limit_usd: float = 1.0
    min_conflicts: int = 1
    feature: int | None = None  # focus on this existing feature's regions
    agent_network: bool = False  # the agent's shell may reach the network
    # Added after the first requests were stored: the defaults are what those requests ran with.
    mutants: int = DEFAULT_MUTANTS
    min_mutation_score: float = DEFAULT_MIN_MUTATION_SCORE
    all_proofs: bool = False  # run every proof even after one fails
    price: tuple[float, float] | None = None  # USD per million tokens in/out; None: the price list's
    token_limit: int | None = None  # tokens per attempt (what limits a model without a price)


class HotSpot(_Part):
    path: str
    start: int
    end: int
    features: list[int]


@event("gen")
class FeaturePromptBuilt(Payload):
    prompt: str
    hotspots: list[HotSpot] = Field(default_factory=list)
    test_command: str = ""


@event("gen")
class FeatureGenerated(Payload):
    feature_patch: str
    tests_patch: str
    feature_md: str
    cost_usd: float | None = 0.0  # None: the model has no price, its cost is unknown
    steps: int = 0
    trajectory_path: str | None = None
    # How the agent ended and what its diff split into, for the validate step (a step of its own,
    # maybe on another replica). Events stored before these were added read as a submitted agent.
    submitted: bool = True
    stop_reason: str = ""  # submitted | step_limit | cost_limit | token_limit | timeout | model_error
    agent_error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    feature_files: list[str] = Field(default_factory=list)
    test_files: list[str] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)
    split_failure: str = ""  # why the diff cannot be a feature; the attempt is not validated
    duration_s: float = 0.0


class ConflictReport(_Part):
    feature: int
    status: Literal["conflict", "clean", "could_not_apply"]
    files: list[str] = Field(default_factory=list)
    hunks: list[str] = Field(default_factory=list)
    union_resolves: bool | None = None
    detail: str = ""


@event("gen")
class FeatureValidated(Payload):
    tests_passed: bool
    passed: int = 0
    failed: int = 0
    conflicts: list[ConflictReport] = Field(default_factory=list)
    valid: bool
    reason: str = ""
    result: dict[str, Any] = Field(default_factory=dict)
    # The new tests' mutation score (killed of total mutants of the feature's added lines); None in
    # events written before it was measured, or when the proof was not run.
    mutants_killed: int | None = None
    mutants_total: int | None = None
