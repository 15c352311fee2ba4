"""What a service handler receives: the ports it may use, wired by `shared.app.bootstrap`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.common.settings import Settings
from shared.events import make_event
from shared.ports.engine import Engine
from shared.ports.errors import StepError

if TYPE_CHECKING:
    from shared.policy.run import RunContext


@dataclass
class Deps:
    settings: Settings
    store: Any  # PostgresEventStore
    workspace: Any  # shared.adapters.workspace.Workspace
    sandbox: Any  # shared.adapters.sandbox.Sandbox
    make_engine: Callable[[RunContext, list], Engine]
    make_forge: Callable[[str, str], Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def engine(self, ctx: RunContext, replay_from: list | None = None) -> Engine:
        return _RecordsCallsOnFailure(self.make_engine(ctx, replay_from or []), self.store, ctx.run_id)


class _RecordsCallsOnFailure:
    """The engine, except that when a step fails with StepError the model calls made so far are
    appended to the run's stream before the error propagates.

    The consumer records a StepError as StepFailed + PipelineFailed only; the handler never gets
    to emit the engine's drained calls, so the calls that caused the failure (429 storms, junk
    answers) would be lost from the log — and they are what a user needs to see."""

    _STEPS = frozenset({"analyze", "suggest", "implement", "review", "write_tests"})

    def __init__(self, engine: Engine, store: Any, stream_id: str):
        self._engine, self._store, self._stream_id = engine, store, stream_id

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if name not in self._STEPS:
            return attr

        async def step(*args: Any, **kwargs: Any) -> Any:
            try:
                return await attr(*args, **kwargs)
            except StepError:
                calls = self._engine.drain_calls()
                if calls:
                    await self._store.append(self._stream_id, [make_event(c, self._stream_id) for c in calls])
                raise

        return step
