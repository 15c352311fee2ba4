"""The Engine port: what every engine (rules, llm) promises the services."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from shared.events import Improvement
from shared.events.run import LlmCallRecorded


class Analysis(BaseModel):
    """The three docs plus computed facts about a repository."""

    specification: str
    graph: str
    architecture: str
    stats: dict[str, Any] = Field(default_factory=dict)


class Implementation(BaseModel):
    """What `implement` changed in the working copy (files relative to the repository root)."""

    files: list[str]
    summary: str = ""


class ModelReview(BaseModel):
    """An engine's own opinion of a change; combined with objective signals in shared.policy.review."""

    overall: float = Field(ge=1.0, le=10.0)
    scores: dict[str, float] = Field(default_factory=dict)  # the six dimensions
    issues: list[str] = Field(default_factory=list)
    summary: str = ""
    samples: list[float] = Field(default_factory=list)


class GeneratedTests(BaseModel):
    """Test files by group (one group per category); paths relative to the repository root."""

    groups: dict[str, dict[str, str]] = Field(default_factory=dict)


REVIEW_DIMENSIONS: tuple[str, ...] = (
    "correctness",
    "security",
    "maintainability",
    "readability",
    "test_coverage",
    "scope",
)


@runtime_checkable
class Engine(Protocol):
    name: str

    async def analyze(self, repo: Path) -> Analysis: ...

    async def suggest(self, repo: Path, analysis: Analysis, categories: list[str]) -> list[Improvement]: ...

    async def implement(self, repo: Path, improvement: Improvement) -> Implementation:
        """Edit the working copy at `repo` in place; raise ChangeRejectedError when it can't."""
        ...

    async def review(self, repo: Path, base_sha: str, head_sha: str, signals: dict[str, Any]) -> ModelReview: ...

    async def write_tests(self, repo: Path, improvements: list[Improvement], categories: list[str]) -> GeneratedTests: ...

    def drain_calls(self) -> list[LlmCallRecorded]:
        """Model calls made since the last drain, to be appended as LlmCallRecorded events."""
        ...
