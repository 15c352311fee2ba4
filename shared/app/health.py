"""`repo-pilot health`: what an operator needs to see that nothing is stalled or stranded.

Everything is read from the store (and the bus when it answers): the relay and projector
positions against the log, quarantined events, runs whose step has not moved for a while, the
durable consumers the services need. A problem makes the report unhealthy (exit code 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class Health:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (name, ok, detail)
    faults: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))


async def collect(store, *, nats_url: str | None, stream_name: str, services: list[str],
                  stall_after: float, relay_name: str = "relay", tasks: dict[str, str] | None = None) -> Health:
    """The health of one installation; `tasks` (name -> error or "") adds in-process tasks."""
    health = Health()
    last = await store.last_position()
    relay_at = await store.get_checkpoint(relay_name)
    projector_at = await store.get_checkpoint("projector")
    health.add("log", True, f"{last} events")
    health.add("relay", relay_at >= last or last == 0, f"published up to position {relay_at} of {last}")
    health.add("projector", projector_at >= last or last == 0, f"projected up to position {projector_at} of {last}")
    health.faults = await store.relay_faults()
    health.add("relay faults", not health.faults,
               f"{len(health.faults)} event(s) quarantined" if health.faults else "none")
    cutoff = datetime.now(UTC) - timedelta(seconds=stall_after)
    stalled = await store.pool.fetch(
        "SELECT r.run_id, max(e.recorded_at) AS moved FROM runs r JOIN events e ON e.stream_id = r.run_id "
        "WHERE r.status = 'RUNNING' GROUP BY r.run_id HAVING max(e.recorded_at) < $1", cutoff)
    health.add("runs", not stalled, ", ".join(f"{r['run_id']} idle since {r['moved']:%H:%M:%S}" for r in stalled)
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
                consumer = await js.consumer_info(stream_name, name)
                health.add(f"consumer {name}", True,
                           f"{consumer.num_pending} pending, {consumer.num_ack_pending} in progress")
            except NotFoundError:
                # Created by the service when a replica starts (and again after a stream is lost);
                # absent just means no replica of it runs or has run against this stream.
                health.add(f"consumer {name}", True, "not created: no replica of it is running")
    finally:
        await nc.close()
