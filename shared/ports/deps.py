"""What a service handler receives: the ports it may use, wired by `shared.app.bootstrap`.

Every field is a port (a Protocol in this package) or a plain value; tests hand the same
`Deps` in-memory fakes (tests/support/fakes.py). There is no bag of extras: a new dependency is
a new typed field, so a handler can be read for what it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from shared.common.settings import Settings
from shared.events.run import LlmCallRecorded
from shared.ports.changes import Changes
from shared.ports.context import RunContext
from shared.ports.engine import Engine
from shared.ports.errors import StepError
from shared.ports.forge import Forge
from shared.ports.generator import FeatureGenerator
from shared.ports.run_log import RunLog
from shared.ports.sandbox import Sandbox
from shared.ports.signals import Signals
from shared.ports.store import EventStore
from shared.ports.suites import Suites
from shared.ports.workspace import Workspace

# (the run, the model calls of the run it replays) -> the engine for that run
EngineFactory = Callable[[RunContext, list[LlmCallRecorded]], Engine]
# (forge kind: local | remote | github, the target repository path or URL) -> the forge
ForgeFactory = Callable[[str, str], Forge]


# What a handler may use, one capability each: a service's handlers module declares the ones it
# needs as `class Uses(UsesStore, UsesWorkspace, ..., Protocol)` and takes `deps: Uses`. `Deps`
# has them all.


@runtime_checkable
class UsesSettings(Protocol):
    settings: Settings


@runtime_checkable
class UsesStore(Protocol):
    store: EventStore


@runtime_checkable
class UsesWorkspace(Protocol):
    workspace: Workspace


@runtime_checkable
class UsesSandbox(Protocol):
    sandbox: Sandbox


@runtime_checkable
class UsesChanges(Protocol):
    changes: Changes


@runtime_checkable
class UsesSignals(Protocol):
    signals: Signals


@runtime_checkable
class UsesSuites(Protocol):
    suites: Suites


@runtime_checkable
class UsesRunLog(Protocol):
    run_log: RunLog


@runtime_checkable
class UsesForge(Protocol):
    make_forge: ForgeFactory


@runtime_checkable
class UsesEngine(Protocol):
    def engine(self, ctx: RunContext, replay_from: list[LlmCallRecorded] | None = None) -> Engine:
        """The run's engine; model calls made before a failing step still reach the log."""
        ...


@dataclass
class Deps:
    settings: Settings
    store: EventStore
    workspace: Workspace
    sandbox: Sandbox
    make_engine: EngineFactory
    make_forge: ForgeFactory
    changes: Changes
    signals: Signals
    suites: Suites
    run_log: RunLog
    # the generator's steps; None only where no generator runs (bootstrap always wires one)
    generator: FeatureGenerator | None = None

    def engine(self, ctx: RunContext, replay_from: list[LlmCallRecorded] | None = None) -> Engine:
        return _RecordsCallsOnFailure(self.make_engine(ctx, replay_from or []))


class _RecordsCallsOnFailure:
    """The engine, except that when a step fails with StepError the model calls made so far go
    with the error (`StepError.records`): the consumer appends them before StepFailed +
    PipelineFailed, with the tracking row, in one transaction. The handler never gets to emit the
    engine's drained calls, so without this the calls that caused the failure (429 storms, junk
    answers) would be lost from the log, and they are what a user needs to see."""

    _STEPS = frozenset({"analyze", "suggest", "implement", "review", "write_tests"})

    def __init__(self, engine: Engine):
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if name not in self._STEPS:
            return attr

        async def step(*args: Any, **kwargs: Any) -> Any:
            try:
                return await attr(*args, **kwargs)
            except StepError as exc:
                exc.records = [*self._engine.drain_calls(), *exc.records]
                raise

        return step
