"""What a service knows about a run: its stream folded into one value (pure). It crosses the
ports (an engine is made per run), so it sits below them; `shared.policy.run` re-exports it."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.events import Envelope
from shared.events.run import (
    ChangeApplied,
    ChangesCommitted,
    ChangesReviewed,
    ImprovementsSuggested,
    LlmCallRecorded,
    MergeCompleted,
    PipelineRequested,
    RepoAnalyzed,
    TestsCompleted,
    TestsGenerated,
)


@dataclass
class RunContext:
    run_id: str
    request: PipelineRequested | None = None
    analyzed: RepoAnalyzed | None = None
    suggested: ImprovementsSuggested | None = None
    applied: list[ChangeApplied] = field(default_factory=list)
    committed: ChangesCommitted | None = None
    reviewed: Envelope | None = None
    tested: Envelope | None = None
    generated: TestsGenerated | None = None
    merged: MergeCompleted | None = None
    tokens_spent: int = 0
    cost_spent: float = 0.0
    replayed_from: str | None = None
    reuse_llm: bool = True  # a replay answers from the original's recorded model calls
    llm_calls: list[LlmCallRecorded] = field(default_factory=list)

    @property
    def review(self) -> ChangesReviewed | None:
        return self.reviewed.data if self.reviewed else None  # type: ignore[return-value]

    @property
    def tests(self) -> TestsCompleted | None:
        return self.tested.data if self.tested else None  # type: ignore[return-value]

    @property
    def engine(self) -> str:
        return (self.request.engine if self.request else None) or "rules"

    @property
    def branch(self) -> str:
        return f"repo-pilot/{self.run_id.removeprefix('run-')[-12:]}"


def run_context(run_id: str, events: list[Envelope]) -> RunContext:
    """Fold a run stream into what handlers need."""
    ctx = RunContext(run_id)
    for e in events:
        d = e.data
        if isinstance(d, PipelineRequested):
            ctx.request = d
            ctx.replayed_from = e.metadata.get("replayed_from")
            # Replays recorded before the choice existed always reused the answers.
            ctx.reuse_llm = bool(e.metadata.get("reuse_llm", True))
        elif isinstance(d, RepoAnalyzed):
            ctx.analyzed = d
        elif isinstance(d, ImprovementsSuggested):
            ctx.suggested = d
        elif isinstance(d, ChangeApplied):
            ctx.applied.append(d)
        elif isinstance(d, ChangesCommitted):
            ctx.committed = d
        elif isinstance(d, ChangesReviewed):
            ctx.reviewed = e
        elif isinstance(d, TestsCompleted):
            ctx.tested = e
        elif isinstance(d, TestsGenerated):
            ctx.generated = d
        elif isinstance(d, MergeCompleted):
            ctx.merged = d
        elif isinstance(d, LlmCallRecorded):
            ctx.tokens_spent += d.prompt_tokens + d.completion_tokens
            ctx.cost_spent += d.cost_usd
            ctx.llm_calls.append(d)
    return ctx
