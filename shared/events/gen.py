"""Payloads of the generation job stream (`gen-<uuid>`), DESIGN section 2."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.registry import Payload, event


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
