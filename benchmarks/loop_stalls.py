"""Where the pipeline bench's step boundaries go, and what blocks the event loop the six services
share: `python -m benchmarks.loop_stalls [RUNS]` (embedded servers, instant scripted model, the
`calc` fixture; not part of `make bench`, its figures have no baseline).

- **Stalls**: a thread samples the loop thread's stack every 10 ms while the loop has not ticked
  for 40 ms, and prints the most frequent places (the innermost frame, then our own callers).
  Only while runs are in flight (server and service start and stop are left out).
- **Boundary split**: each step boundary (cause's append → StepStarted) cut into relay (append →
  stored on JetStream), delivery (→ the consumer's message callback) and consumer (→ StepStarted:
  the store checks before the handler).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import asyncpg

from benchmarks import pipeline_bench as pb
from benchmarks.servers import bench_servers
from shared.app.runtime import PIPELINE_SERVICES, System
from shared.events import Envelope
from shared.messaging import consumer

ROOT = str(Path(__file__).resolve().parents[1]) + "/"
SCHEMA = "loop_stalls"


class StallSampler:
    def __init__(self, stalled: float = 0.04, every: float = 0.01):
        self.stalled, self.every = stalled, every
        self.samples: collections.Counter[str] = collections.Counter()
        self.last, self.loop_thread = time.monotonic(), threading.get_ident()
        self.active = False

    async def tick(self) -> None:
        while True:
            self.last = time.monotonic()
            await asyncio.sleep(0.005)

    def watch(self) -> None:
        while True:
            time.sleep(self.every)
            frame = sys._current_frames().get(self.loop_thread)
            if not self.active or frame is None or time.monotonic() - self.last <= self.stalled:
                continue
            stack = traceback.extract_stack(frame)
            where = [f"{f.filename.removeprefix(ROOT)}:{f.lineno} {f.name}" for f in stack]
            ours = [w for w in where if w.startswith(("shared/", "services/", "benchmarks/"))]
            self.samples[f"{Path(stack[-1].filename).name}:{stack[-1].lineno} || "
                         + " <- ".join(reversed(ours[-4:]))] += 1


def record_arrivals(arrived: dict) -> None:
    """Note when each service's consumer first got each event, and when JetStream stored it."""
    original = consumer.ServiceRuntime._on_message

    async def on_message(self, msg):
        raw = msg.raw_message
        event = Envelope.from_json(raw.data)
        arrived.setdefault(event.event_id, (raw.metadata.timestamp, datetime.datetime.now(datetime.UTC)))
        return await original(self, msg)

    consumer.ServiceRuntime._on_message = on_message


async def main(runs: int) -> None:
    sampler, arrived, parts = StallSampler(), {}, []
    threading.Thread(target=sampler.watch, daemon=True).start()
    ticker = asyncio.get_running_loop().create_task(sampler.tick())
    record_arrivals(arrived)
    with bench_servers() as servers, tempfile.TemporaryDirectory() as tmp, pb.scripted_server() as model:
        settings = pb.bench_settings(servers.nats_url, servers.database_url, SCHEMA, Path(tmp) / "home",
                                     model.base_url, REPO_PILOT_LLM_CONCURRENCY=8)
        conn = await asyncpg.connect(servers.database_url)
        try:
            async with System(settings, services=list(PIPELINE_SERVICES)) as system:
                for i in range(runs):
                    repo = pb.make_calc_repo(Path(tmp) / f"calc-{i}")
                    sampler.active = True
                    run = await pb.bus_run(system, conn, repo)
                    sampler.active = False
                    rows = await conn.fetch(f'SELECT event_id, type, recorded_at, occurred_at, causation_id, '
                                            f'data FROM "{SCHEMA}".events WHERE stream_id = $1', run.run_id)
                    recorded = {r["event_id"]: r for r in rows}
                    for r in rows:
                        cause = recorded.get(r["causation_id"])
                        if r["type"] != "StepStarted" or cause is None or cause["event_id"] not in arrived:
                            continue
                        stored, entry = arrived[cause["event_id"]]
                        parts.append(((stored - cause["recorded_at"]).total_seconds() * 1e3,
                                      (entry - stored).total_seconds() * 1e3,
                                      (r["occurred_at"] - entry).total_seconds() * 1e3,
                                      (r["occurred_at"] - cause["recorded_at"]).total_seconds() * 1e3))
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
            await conn.close()
            ticker.cancel()
    for i, name in enumerate(("relay", "delivery", "consumer", "boundary")):
        print(f"{name:9} p50 {statistics.median(p[i] for p in parts):6.1f} ms  ({len(parts)} boundaries)")
    print(f"loop stalled > 40 ms: {sum(sampler.samples.values())} samples of 10 ms; most frequent:")
    for where, n in sampler.samples.most_common(25):
        print(f"{n:5d}  {where}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2))
