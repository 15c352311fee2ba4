"""Replaying a recorded run: again from the start, or forked from one of its steps.

`replay` (no step) appends a new `PipelineRequested` pinned to the commit the original analyzed.
`fork` from a step starts a new run whose stream is a copy of the original's events up to that
step (the `StepStarted` of its first attempt), then lets the pipeline go on from there:

- each copy is linked to its original: `causation_id` is the original event's id, its metadata
  says `replayed_from` (the original run) and `replayed_event` (the original event), and it keeps
  the original's `traceparent`, so the span of whoever handles it starts a new trace with a Link
  to the original one (`shared.common.telemetry.handler_span`), never a child of it;
- every copy except the one that started the step gets a tracking row for each service that
  routes its type, written in the same transaction: services skip copied history exactly as
  they skip a redelivery, and only the step forked from (and what follows it) runs again;
- `reuse_llm` (metadata of the request) makes the engines answer from the original run's
  `LlmCallRecorded` by prompt hash: a step whose prompt did not change calls no model.

Neither merges changes the target already has: the merger compares what merging would produce
with the default branch (`Forge.already_has`) and reports "already merged" instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.events import Envelope, PipelineRequested, new_run_stream
from shared.events.run import STEPS

# Steps a run can be forked from; `analyze` is the whole run again (a replay).
FORK_STEPS = STEPS


class ReplayRefused(ValueError):
    """The run cannot be replayed or forked as asked (the message says why)."""


def plan_fork(original: Sequence[Envelope], new_run: str, step: str, *, reuse_llm: bool) -> tuple[list[Envelope], object]:
    """The copies to append to `new_run` and the id of the copy that resumes the pipeline.

    LookupError when `original` is no run; ReplayRefused when it never reached `step`."""
    if not original or original[0].type != "PipelineRequested":
        raise LookupError("no run to fork: its stream does not start with PipelineRequested")
    run_id = original[0].stream_id
    if step not in FORK_STEPS:
        raise ReplayRefused(f"unknown step {step!r}; choose from {', '.join(FORK_STEPS)}")
    started = next((e for e in original if e.type == "StepStarted" and e.data.step == step), None)
    if started is None:
        reached = [e.data.step for e in original if e.type == "StepStarted" and e.data.step in FORK_STEPS]
        raise ReplayRefused(f"run {run_id} never reached {step!r}; it started "
                            f"{', '.join(dict.fromkeys(reached)) or 'no step'}")
    kept = list(original[: original.index(started)])
    if started.causation_id not in {e.event_id for e in kept}:
        raise ReplayRefused(f"cannot tell which event started {step!r} in run {run_id}")
    copies, resume = [], None
    for version, e in enumerate(kept, 1):
        metadata = {**e.metadata, "replayed_from": run_id, "replayed_event": str(e.event_id)}
        if version == 1:
            metadata.update(reuse_llm=reuse_llm, forked_at=step)
        copy = Envelope(type=e.type, stream_id=new_run, causation_id=e.event_id,
                        correlation_id=new_run if e.correlation_id in (None, run_id) else e.correlation_id,
                        metadata=metadata, data=e.data).stored(version, 0)
        if e.event_id == started.causation_id:
            resume = copy.event_id
        copies.append(copy)
    return copies, resume


def replay_request(events: Sequence[Envelope]) -> PipelineRequested:
    """The request to run again for a recorded run (its events in order), or LookupError.

    The ref is pinned to the commit the original run analyzed, so prompts (and so recorded
    model answers) match."""
    if not events or events[0].type != "PipelineRequested":
        raise LookupError("no run to replay: its stream does not start with PipelineRequested")
    request = events[0].data
    analyzed = next((e.data for e in events if e.type == "RepoAnalyzed"), None)
    if analyzed is not None:
        request = request.model_copy(update={"ref": analyzed.base_sha})
    return request


async def replay(store, run_id: str, step: str | None = None, *, reuse_llm: bool = False,
                 service: str) -> tuple[str, PipelineRequested]:
    """Start a replay of `run_id` (from the start, or forked from `step`); the new run's id and
    request. LookupError for an unknown run, ReplayRefused for a step it never reached,
    RunInProgress while another run on the same target has not ended."""
    from shared.app.requests import RunInProgress, append_request
    from shared.store.queries import target_transaction

    original = await store.read_stream(run_id)
    if step in (None, "analyze"):
        request = replay_request(original)
        metadata = {"replayed_from": run_id, "reuse_llm": reuse_llm}
        return await append_request(store, request, service=service, metadata=metadata), request
    from shared.app.eventlog import append_history

    new_run = new_run_stream()
    copies, resume = plan_fork(original, new_run, step, reuse_llm=reuse_llm)
    request = copies[0].data
    async with target_transaction(store, request.repo, request.ref) as (conn, running):
        if running:
            raise RunInProgress(request.repo, request.ref, running)
        await append_history(store, conn, copies, except_for=frozenset({resume}))
    return new_run, request
