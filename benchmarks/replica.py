"""One replica for the scale-out benchmark: a process running every pipeline service (one consumer
each, sharing the durable consumers with the other replicas), no relay, no projector.

    python -m benchmarks.replica      # settings from the environment; prints "ready" once consuming
"""

from __future__ import annotations

import asyncio
import logging
import signal

from shared.app.runtime import PIPELINE_SERVICES, System
from shared.common.settings import Settings


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with System(Settings(), services=list(PIPELINE_SERVICES), relay=False, projector=False):
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
