"""`repo-pilot health`: what an operator needs to see that nothing is stalled or stranded.

Everything is read from the store (and the bus when it answers): the relay and projector
positions against the log, quarantined events, runs whose step has not moved for a while, the
durable consumers the services need. A problem makes the report unhealthy (exit code 1).

Lag is judged over a window (`window` seconds, two samples, `stalled` in shared/messaging/lag.py):
a relay behind the log whose checkpoint did not move fails, and so does a durable whose backlog
grew while its ack floor did not move; one working off its backlog passes and says how far behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.store.queries import stalled_runs


@dataclass
class Health:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (name, ok, detail)
    faults: list[dict] = field(default_factory=list)
    lag: object = None  # the latest LagSample

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))


async def collect(store, *, nats_url: str | None, stream_name: str, services: list[str],
                  stall_after: float, relay_name: str = "relay", tasks: dict[str, str] | None = None,
                  window: float = 0.0, previous=None) -> Health:
    """The health of one installation; `tasks` (name -> error or "") adds in-process tasks.

    Lag is compared with `previous` (a `LagSample`) when given, else with a sample taken `window`
    seconds earlier; with neither, only the current lag is reported. `health.lag` keeps the
    latest sample for the next call."""
    health = Health()
    await _lag(health, store, nats_url, stream_name, relay_name, window, previous)
    last = health.lag.head
    relay_at = health.lag.relay_at
    projector_at = await store.get_checkpoint("projector")
    health.add("log", True, f"{last} events")
    health.add("relay", True, f"published up to position {relay_at} of {last}")
    health.add("projector", projector_at >= last or last == 0, f"projected up to position {projector_at} of {last}")
    health.faults = await store.relay_faults()
    health.add("relay faults", not health.faults,
               f"{len(health.faults)} event(s) quarantined" if health.faults else "none")
    stalled = await stalled_runs(store, stall_after)
    health.add("runs", not stalled, ", ".join(f"{r.run_id} idle since {r.moved:%H:%M:%S} at {r.step}" for r in stalled)
               or "no run idle past the sweeper deadline")
    for name, error in (tasks or {}).items():
        health.add(f"task {name}", not error, error or "running")
    if nats_url:
        await _bus(health, nats_url, stream_name, services)
    return health


async def _bus(health: Health, nats_url: str, stream_name: str, services: list[str]) -> None:
    import nats
    from nats.js.errors import NotFoundError

    try:
        nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=0)
    except Exception as exc:
        health.add("bus", False, f"NATS at {nats_url} does not answer: {exc}")
        return
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream_name)
        except NotFoundError:
            health.add("bus", False, f"stream {stream_name} is missing (the relay recreates it)")
            return
        health.add("bus", True, f"stream {stream_name}: {info.state.messages} messages")
        for name in services:
            try:
                await js.consumer_info(stream_name, name)
                health.add(f"consumer {name}", True, "durable consumer exists (its lag: `lag " + name + "`)")
            except NotFoundError:
                # Created by the service when a replica starts (and again after a stream is lost);
                # absent just means no replica of it runs or has run against this stream.
                health.add(f"consumer {name}", True, "not created: no replica of it is running")
    finally:
        await nc.close()


async def _lag(health: Health, store, nats_url: str | None, stream_name: str, relay_name: str,
               window: float, previous) -> None:
    import asyncio

    from shared.messaging.lag import sample, stalled

    nc = None
    if nats_url:
        import nats

        try:
            nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=0)
        except Exception:
            nc = None  # `_bus` reports it
    try:
        js = nc.jetstream() if nc is not None else None
        before = previous
        if before is None and window > 0:
            before = await sample(store, js, stream_name, relay_name)
            await asyncio.sleep(window)
        now = await sample(store, js, stream_name, relay_name)
    finally:
        if nc is not None:
            await nc.close()
    health.lag = now
    stuck = stalled(before, now) if before is not None else {}
    health.add("relay lag", "relay" not in stuck, stuck.get("relay") or (
        f"{now.relay_lag} events behind the log" + ("" if before is None else
                                                     f" (was {before.relay_lag})")))
    for name, consumer in sorted(now.consumers.items()):
        health.add(f"lag {name}", name not in stuck, stuck.get(name) or (
            f"{consumer.pending} pending, {consumer.ack_pending} in progress, acked up to {consumer.acked}"))
