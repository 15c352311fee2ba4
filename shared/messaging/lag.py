"""How far behind the bus and its consumers are, read from the sources of truth (issue 22).

Consumer lag comes from JetStream's own consumer info (`num_pending` + `num_ack_pending` per
durable), not from the messages a consumer happens to receive: a durable whose every replica is
down, or a relay that publishes nothing, still shows its backlog. Relay lag is the log head minus
the relay's checkpoint, both read from the store.

`LagPoller.run` samples both on a timer and sets the gauges (`repo_pilot_consumer_lag`,
`repo_pilot_consumer_acked`, `repo_pilot_relay_lag`, `repo_pilot_log_head`); it runs wherever
the relay does (`System`), standing by or leading. `stalled` is the pure rule `repo-pilot health`
and the gateway's `/readyz` apply to two samples: a backlog that did not move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from shared.common import telemetry

log = logging.getLogger("repo_pilot.lag")

POLL_INTERVAL = 5.0  # seconds; below the metric export interval, so every export has a fresh value


@dataclass(frozen=True)
class ConsumerLag:
    pending: int  # in the stream, not yet delivered to the durable
    ack_pending: int  # delivered, not yet acknowledged (in a handler, or its replica died)
    acked: int  # the durable's ack floor (a stream sequence): moves when work is done

    @property
    def lag(self) -> int:
        return self.pending + self.ack_pending


@dataclass(frozen=True)
class LagSample:
    head: int  # the log's last global position
    relay_at: int  # the relay's checkpoint
    consumers: dict[str, ConsumerLag] = field(default_factory=dict)
    bus_error: str = ""  # why the consumers could not be read ("" when they were)

    @property
    def relay_lag(self) -> int:
        return max(self.head - self.relay_at, 0)


def stalled(before: LagSample, after: LagSample) -> dict[str, str]:
    """What fell behind between two samples without moving: name -> why ("relay", a durable).

    A consumer whose backlog grew while its ack floor did not move is stalled (a long step may
    hold one message for minutes, so a steady backlog is not). The relay is stalled when it is
    behind and its checkpoint did not move: a working relay publishes a backlog in moments."""
    found = {}
    if after.relay_lag > 0 and after.relay_at == before.relay_at:
        found["relay"] = (f"{after.relay_lag} events behind the log (was {before.relay_lag}), "
                          f"checkpoint stuck at {after.relay_at}")
    for name, now in after.consumers.items():
        then = before.consumers.get(name)
        if then is not None and now.lag > then.lag and now.acked == then.acked:
            found[name] = f"{now.lag} messages pending (was {then.lag}), nothing acknowledged"
    return found


async def consumer_lags(js, stream_name: str) -> dict[str, ConsumerLag]:
    """Every durable consumer on the stream, whether or not any replica of it runs."""
    return {
        info.name: ConsumerLag(info.num_pending or 0, info.num_ack_pending or 0,
                               info.ack_floor.stream_seq if info.ack_floor else 0)
        for info in await js.consumers_info(stream_name)
    }


async def sample(store, js, stream_name: str, relay_name: str = "relay") -> LagSample:
    """One reading of the log head, the relay checkpoint and every durable's backlog.

    The store must answer; a bus that does not is recorded in `bus_error` (the relay figures
    still count)."""
    head = await store.last_position()
    relay_at = await store.get_checkpoint(relay_name)
    if js is None:
        return LagSample(head, relay_at, bus_error="no bus connection")
    try:
        consumers = await consumer_lags(js, stream_name)
    except Exception as exc:  # NATS down or stream gone: say so, keep the relay's figures
        return LagSample(head, relay_at, bus_error=f"{type(exc).__name__}: {exc}".strip())
    return LagSample(head, relay_at, consumers)


def export(reading: LagSample, metrics: telemetry.Metrics | None = None) -> None:
    """Set the lag gauges from one sample."""
    m = metrics or telemetry.default_metrics()
    m.set_relay_lag(reading.head, reading.relay_at)
    for name, consumer in reading.consumers.items():
        m.set_consumer_lag(name, consumer.lag, consumer.acked)


@dataclass
class LagPoller:
    """Samples lag every `interval` seconds and exports it (see the module docstring)."""

    store: object
    nc: object
    stream_name: str
    relay_name: str = "relay"
    interval: float = POLL_INTERVAL
    last: LagSample | None = None

    async def run(self, stop: asyncio.Event) -> None:
        js = self.nc.jetstream()
        while not stop.is_set():
            self.last = await sample(self.store, js, self.stream_name, self.relay_name)
            if self.last.bus_error:
                log.debug("lag: consumers unreadable: %s", self.last.bus_error)
            export(self.last)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
