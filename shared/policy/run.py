"""What a service needs to know about a run (the fold: shared.ports.context), and small decisions."""

from __future__ import annotations

from pathlib import Path

from shared.events import Envelope, make_event
from shared.events.run import LlmCallRecorded, TestGroupResult
from shared.policy.behaviour import changes_behaviour
from shared.policy.review import combine_review, explicitly_asked, own_suite_regression
# The fold crosses the ports (an engine is made per run), so it lives below them; importable from here too.
from shared.ports.context import RunContext, run_context
from shared.ports.store import EventStore


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


def applied_improvements(ctx: RunContext) -> list:
    """The suggested improvements whose change is in the run's committed patch series, in suggested order."""
    applied = {p.improvement_id for p in ctx.committed.patches} if ctx.committed else set()
    return [i for i in ctx.suggested.improvements if i.id in applied] if ctx.suggested else []


def review_verdict(ctx: RunContext, signals: dict, model) -> dict:
    """The review of the run's committed changes (ChangesReviewed's fields) from the change's
    `signals`, the model's opinion (None for the rules engine) and what the run knows: which
    applied fixes were validated, whether files alone were asked for, the tests' results."""
    c = ctx.committed
    signals = {**signals, "validated_fixes": sum(1 for i in applied_improvements(ctx) if changes_behaviour(i.rule))}
    # Documents and configs alone may merge only when the request asked for those categories on their own.
    signals["asked_for_files"] = any(explicitly_asked(k, ctx.request.categories) for k in ("compliance", "integration"))
    tests = ctx.tests.model_dump() if ctx.tests else None
    verdict = combine_review(signals, model, ctx.request.threshold, tests=tests)
    if not c.patches:
        verdict = {**verdict, "passed": False, "blockers": [*verdict.get("blockers", []), "no changes"]}
    return verdict
