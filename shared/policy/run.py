"""What a service needs to know about a run, folded from its stream (pure), and small decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.events import Envelope, make_event
from shared.events.run import (
    ChangeApplied,
    ChangesCommitted,
    ChangesReviewed,
    ImprovementsSuggested,
    LlmCallRecorded,
    MergeCompleted,
    PipelineRequested,
    RepoAnalyzed,
    TestGroupResult,
    TestsCompleted,
    TestsGenerated,
)
from shared.policy.review import own_suite_regression
from shared.ports.store import EventStore


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


def regressed(before: TestGroupResult, after: TestGroupResult) -> bool:
    """The repository's own suite got worse (the rule: `shared.policy.review.own_suite_regression`)."""
    return own_suite_regression(before, after) is not None


def scaffold_only(improvements: list, repo) -> list:
    """Improvements that only add files missing from the repository (what `scaffold` generates)."""
    return [i for i in improvements if i.files and not any((Path(repo) / f).exists() for f in i.files)]


def replay_answers(previous: list[LlmCallRecorded]) -> dict[str, str]:
    """Prompt hash -> recorded response, so a replayed run reuses the model's answers."""
    return {c.prompt_hash: c.response for c in previous if c.error is None and c.response}


def emit(cause: Envelope, service: str, *payloads) -> list[Envelope]:
    """Events reacting to `cause`, on its stream, carrying its correlation and trace."""
    return [make_event(p, cause.stream_id, cause=cause, service=service) for p in payloads]


async def load_context(store: EventStore, event: Envelope) -> RunContext:
    return run_context(event.stream_id, await store.read_stream(event.stream_id))


async def previous_calls(store: EventStore, ctx: RunContext) -> list[LlmCallRecorded]:
    """Model calls of the run this one replays (empty when it is not a replay, or a replay that
    asked the model again)."""
    if not ctx.replayed_from or not ctx.reuse_llm:
        return []
    return run_context(ctx.replayed_from, await store.read_stream(ctx.replayed_from)).llm_calls
