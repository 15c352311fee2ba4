"""Ending asyncio tasks for sure, in bounded time (what every `stop` uses).

On Python 3.11 a cancellation can be swallowed: nats-py's `Client.close()` catches
`CancelledError`, and a cancel that lands as an inner `wait_for` completes is lost (fixed in 3.12).
A task cancelled once may then run on, and whoever awaits it waits forever; `asyncio.wait_for` on
such a task hangs too, since after its timeout it waits for the cancelled task to finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger("repo_pilot.tasks")


async def cancel_until_done(*tasks: asyncio.Task, every: float | None = None,
                            give_up_after: float | None = None) -> set[asyncio.Task]:
    """Cancel `tasks` and wait for them, cancelling again every `every` seconds (default 1, or a
    fifth of `give_up_after` when shorter) while any still runs. With `give_up_after`, stop
    waiting after that many seconds and return the tasks still running (logged), else wait until
    all ended; an empty set means all ended."""
    if every is None:
        every = 1.0 if give_up_after is None else min(1.0, give_up_after / 5)
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = None if give_up_after is None else loop.time() + give_up_after
    while pending:
        for task in pending:
            task.cancel()
        wait = every if deadline is None else max(0.0, min(every, deadline - loop.time()))
        _, pending = await asyncio.wait(pending, timeout=wait)
        if pending and deadline is not None and loop.time() >= deadline:
            log.warning("still running after %gs of cancelling, left behind: %s", give_up_after,
                        ", ".join(sorted(t.get_name() for t in pending)))
            break
    return pending


async def finish_within(work: Awaitable, seconds: float, what: str) -> bool:
    """Await `work` for up to `seconds`; past that, cancel it (again and again, for at most
    `seconds` more) and go on. True when it finished in time; its error, if any, propagates."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()  # the caller is cancelled: so is its work
        raise
    if done:
        task.result()
        return True
    log.warning("%s did not finish within %gs; cancelled", what, seconds)
    await cancel_until_done(task, give_up_after=seconds)
    return False
