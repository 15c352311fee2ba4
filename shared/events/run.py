"""Payloads of the pipeline run stream (`run-<uuid>`), DESIGN section 2."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.registry import Payload, event

Category = Literal["features", "security", "compliance", "integration"]
CATEGORIES: tuple[str, ...] = ("features", "security", "compliance", "integration")
EngineName = Literal["rules", "llm"]

# The pipeline steps, in order; each is one bead.
STEPS: tuple[str, ...] = ("analyze", "suggest", "execute", "test", "review", "merge", "docs")  # run order


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)  # as Payload's


# -- requests and step bookkeeping -------------------------------------------------------


@event("run")
class PipelineRequested(Payload):
    repo: str  # local path or git URL
    ref: str | None = None
    categories: list[Category] = Field(default_factory=lambda: list(CATEGORIES))
    threshold: float = Field(default=7.0, ge=1.0, le=10.0)
    engine: EngineName | None = None  # None: rules unless a model endpoint is configured
    forge: Literal["local", "remote", "github"] = "local"
    requested_by: str | None = None
    # "scaffold": only improvements that add missing best-practice files (`repo-pilot scaffold`).
    mode: Literal["improve", "scaffold"] = "improve"


@event("any")
class StepStarted(Payload):
    step: str  # a pipeline step, or "improvement:<id>"
    attempt: int = 1
    engine: str | None = None
    detail: str = ""


@event("any")
class StepCompleted(Payload):
    step: str
    summary: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


@event("any")
class StepFailed(Payload):
    step: str
    error: str
    attempt: int = 1
    retryable: bool = False


@event("any")
class StepSkipped(Payload):
    step: str
    reason: str


# -- the work ----------------------------------------------------------------------------


@event("run")
class RepoAnalyzed(Payload):
    base_sha: str
    default_branch: str
    repo_path: str  # the materialized repository the run works on
    stats: dict[str, Any] = Field(default_factory=dict)
    specification: str
    graph: str
    architecture: str
    engine: EngineName = "rules"


class Improvement(_Part):
    id: str
    category: Category
    title: str
    rationale: str
    files: list[str] = Field(default_factory=list)
    changes: str = ""  # what to change, in words
    rule: str | None = None  # the rule or check behind it (rules engine)


@event("run")
class ImprovementsSuggested(Payload):
    improvements: list[Improvement]


class ProjectChecks(_Part):
    """What the project's own checks (its linters, formatter, type checker, pre-commit hooks) said
    about one change, on the files it touched: findings per tool before -> after, the files the
    gate repaired within the change's lines, and the checks that did not run, with why."""

    ran: list[str] = Field(default_factory=list)
    before: dict[str, int] = Field(default_factory=dict)
    after: dict[str, int] = Field(default_factory=dict)
    repaired: list[str] = Field(default_factory=list)
    not_run: dict[str, str] = Field(default_factory=dict)


@event("run")
class ChangeApplied(Payload):
    improvement_id: str
    patch: str
    files: list[str]
    commit_sha: str
    summary: str = ""  # what the engine did, and for a behaviour-changing fix where and why (optional: old logs)
    checks: ProjectChecks | None = None  # the project's own checks on the change (None: old logs, or not run)


@event("run")
class ChangeRejected(Payload):
    improvement_id: str
    reason: str
    checks: ProjectChecks | None = None  # when the project's own checks rejected it: what they said


class PatchEntry(_Part):
    improvement_id: str
    commit_sha: str
    patch: str


@event("run")
class ChangesCommitted(Payload):
    branch: str
    base_sha: str
    head_sha: str
    patches: list[PatchEntry]


@event("run")
class ChangesReviewed(Payload):
    overall: float = Field(ge=1.0, le=10.0)
    scores: dict[str, float] = Field(default_factory=dict)  # six dimensions
    issues: list[str] = Field(default_factory=list)
    summary: str = ""
    passed: bool
    threshold: float = 7.0
    signals: dict[str, Any] = Field(default_factory=dict)  # objective signals
    model_score: float | None = None
    flagged: list[str] = Field(default_factory=list)  # disagreements between model and signals
    blockers: list[str] = Field(default_factory=list)  # reasons that forbid auto-merge


class TestGroupResult(_Part):
    __test__ = False  # a payload, not a pytest test class

    group: str  # a category, "own" for the repository's suite, "smoke"
    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    output: str = ""
    timed_out: float | None = None  # seconds after which the run was stopped, when it was


@event("run")
class TestsGenerated(Payload):
    __test__ = False  # a payload, not a pytest test class

    files: dict[str, str]  # path -> content
    groups: dict[str, list[str]] = Field(default_factory=dict)  # group -> paths


@event("run")
class TestsCompleted(Payload):
    __test__ = False  # a payload, not a pytest test class

    groups: list[TestGroupResult] = Field(default_factory=list)
    own_before: TestGroupResult | None = None
    own_after: TestGroupResult | None = None
    regressed: bool = False


@event("run")
class MergeCompleted(Payload):
    pushed: bool
    branch: str
    pr_url: str | None = None
    merged: bool
    merge_sha: str | None = None
    reason: str = ""


@event("run")
class DocsUpdated(Payload):
    files: list[str]
    commit_sha: str | None = None


@event("run")
class PipelineCompleted(Payload):
    verdict: Literal["merged", "not_merged"]
    summary: str = ""
    run_log: str | None = None


@event("any")
class PipelineFailed(Payload):
    step: str
    error: str
    hint: str = ""


@event("any")
class LlmCallRecorded(Payload):
    purpose: str
    model: str
    prompt_hash: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    response: str = ""
    attempt: int = 1
    error: str | None = None
    note: str | None = None  # what was accepted from an imperfect answer (fewer ideas, missing scores)
