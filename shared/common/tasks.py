"""Ending asyncio tasks for sure, in bounded time (what every `stop` uses); cleanup that a
cancellation cannot cut short (`despite_cancel`); worker threads that a cancellation reaches
(`in_thread`, `run_from_thread`).

On Python 3.11 a cancellation can be swallowed: nats-py's `Client.close()` catches
`CancelledError`, and a cancel that lands as an inner `wait_for` completes is lost (fixed in 3.12).
A task cancelled once may then run on, and whoever awaits it waits forever; `asyncio.wait_for` on
such a task hangs too, since after its timeout it waits for the cancelled task to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("repo_pilot.tasks")
T = TypeVar("T")


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


async def despite_cancel(work: Awaitable):
    """Await `work` to its end even when cancelled meanwhile (again and again, as `cancel_until_done`
    does), then raise the cancellation: for cleanup that must not be cut short, such as killing
    and reaping a child process. `work` runs as its own task, out of reach of the caller's cancels."""
    task = asyncio.ensure_future(work)
    interrupted = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # the work itself was cancelled (asyncio.run's last sweep)
                raise
            interrupted = True
    if interrupted:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation wins, as it would have without the shield
        raise asyncio.CancelledError
    return task.result()


# -- threads a cancellation reaches ---------------------------------------------------------------
#
# A thread cannot be cancelled, so `asyncio.to_thread` leaves it running when its caller is: a
# subprocess it waits for outlives the step, and the process's exit waits for it (the default
# executor is joined). `in_thread` hands the thread a link; `run_from_thread` (the thread's
# `asyncio.run`) ties the thread's own event loop to it, so cancelling the caller cancels what the
# thread awaits, which then ends its subprocesses the way any cancelled coroutine does.


class _Link:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._tasks: set[tuple[asyncio.AbstractEventLoop, asyncio.Task]] = set()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            tasks = list(self._tasks)
        for loop, task in tasks:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nothing left to cancel
                loop.call_soon_threadsafe(task.cancel)

    def attach(self, task: asyncio.Task) -> bool:
        """Cancel `task` with the link; False (not attached) when the link is cancelled already."""
        with self._lock:
            if self._cancelled:
                return False
            self._tasks.add((task.get_loop(), task))
            return True

    def detach(self, task: asyncio.Task) -> None:
        with self._lock:
            self._tasks.discard((task.get_loop(), task))


_LINK: contextvars.ContextVar[_Link | None] = contextvars.ContextVar("repo_pilot_thread_link", default=None)


async def in_thread(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """`asyncio.to_thread`, but a cancellation reaches the thread: every `run_from_thread` in it is
    cancelled (and any it starts later refuses to run), and the caller waits for the thread to end
    before the cancellation propagates, so what the thread started is stopped by then. A second
    cancellation stops the waiting, not the thread."""
    link = _Link()
    context = contextvars.copy_context()
    context.run(_LINK.set, link)
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(context.run, fn, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        link.cancel()
        await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # retrieved: the thread's own end (often this cancellation) is not news
        raise


def run_from_thread(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` for code running under `in_thread`: cancelled when the `in_thread` caller
    is (raising `asyncio.CancelledError` here). Elsewhere it is plain `asyncio.run`."""
    link = _LINK.get()

    async def linked() -> T:
        task = asyncio.current_task()
        if not link.attach(task):
            coro.close()
            raise asyncio.CancelledError
        try:
            return await coro
        finally:
            link.detach(task)

    return asyncio.run(linked() if link is not None else coro)
