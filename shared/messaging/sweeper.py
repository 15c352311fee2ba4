"""The sweeper: every run ends, visibly (issue 13).

A run whose stream has recorded nothing for `stall_after` seconds and has not ended is failed
with `StepFailed` + `PipelineFailed` naming the step it stalled at and for how long. That covers
what no consumer can record itself: a message given up by the bus after its last delivery while
the process that held it died, a service that is not running at all, a lost request.

What counts as stalled is `shared.store.queries.stalled_runs` (`repo-pilot health` reports the
same runs); the failure is appended with the stream's expected version, so a run that moved in
the meantime (or another sweeper that got there first) is left alone: any number may run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from shared.events import make_event
from shared.events.run import PipelineFailed, StepFailed
from shared.store import ConcurrencyError
from shared.store.queries import StalledRun, stalled_runs

log = logging.getLogger("repo_pilot.sweeper")


def stall_message(step: str, idle_seconds: float) -> str:
    return (f"no progress for {idle_seconds:.0f}s at step {step!r}: ended by the sweeper "
            "(a service may be down, or the step was given up after its last delivery)")


class Sweeper:
    def __init__(self, store, stall_after: float, *, interval: float | None = None):
        self.store = store
        self.stall_after = stall_after
        self.interval = interval if interval is not None else max(min(stall_after / 4, 60.0), 0.2)
        self.ended = 0

    async def find_stalled(self, now: datetime | None = None) -> list[StalledRun]:
        """Runs not ended whose last event is older than `stall_after` seconds."""
        return await stalled_runs(self.store, self.stall_after, now)

    async def sweep(self) -> int:
        """End every stalled run; returns how many this call ended."""
        ended = 0
        for stalled in await self.find_stalled():
            error = stall_message(stalled.step, stalled.idle_seconds)
            events = [
                make_event(StepFailed(step=stalled.step, error=error, retryable=True), stalled.run_id,
                           service="sweeper"),
                make_event(PipelineFailed(step=stalled.step, error=error,
                                          hint="see `repo-pilot health` and the services' logs; "
                                               "REPO_PILOT_STALL_AFTER sets the deadline"),
                           stalled.run_id, service="sweeper"),
            ]
            try:
                await self.store.append(stalled.run_id, events, stalled.version)
            except ConcurrencyError:
                continue  # it moved (or another sweeper ended it): not stalled after all
            log.warning("%s: %s", stalled.run_id, error)
            ended += 1
        self.ended += ended
        return ended

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            await self.sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
