"""Ending tasks for sure: a cancellation swallowed once (as nats-py's close() does) is sent again;
cleanup survives repeated cancels; a cancel reaches into a worker thread's own event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shared.common.tasks import cancel_until_done, despite_cancel, finish_within, in_thread, run_from_thread

pytestmark = pytest.mark.unit


async def swallows_first_cancel(ended: list[str]) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass  # what nats-py's Client.close() does
    await asyncio.sleep(3600)
    ended.append("never")


async def test_a_swallowed_cancel_is_sent_again_until_the_task_ends():
    ended: list[str] = []
    task = asyncio.create_task(swallows_first_cancel(ended))
    await asyncio.sleep(0)
    assert await cancel_until_done(task, every=0.05) == set()
    assert task.cancelled() and ended == []


async def test_work_that_overruns_is_cancelled_and_reported():
    task_seen: list[asyncio.Task] = []

    async def slow() -> None:
        task_seen.append(asyncio.current_task())
        await swallows_first_cancel([])

    assert await finish_within(slow(), 0.05, "slow work") is False
    assert task_seen[0].done()
    assert await finish_within(asyncio.sleep(0, result=1), 5, "quick work") is True


async def test_cleanup_run_despite_cancel_finishes_under_repeated_cancels_then_raises():
    steps: list[str] = []

    async def cleanup() -> None:
        for step in ("term", "grace", "kill", "reap"):
            await asyncio.sleep(0.02)
            steps.append(step)

    async def stopping() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await despite_cancel(cleanup())

    task = asyncio.create_task(stopping())
    await asyncio.sleep(0)
    assert await cancel_until_done(task, every=0.01) == set()  # a cancel every 10 ms, as `stop` sends
    assert task.cancelled() and steps == ["term", "grace", "kill", "reap"]


async def test_a_cancel_reaches_the_coroutines_an_in_thread_function_runs_and_the_ones_it_would_start():
    started: list[int] = []
    thread_ended = threading.Event()

    async def waits(n: int) -> None:
        started.append(n)
        await asyncio.sleep(3600)

    def blocking() -> None:
        try:
            for n in range(3):
                run_from_thread(waits(n))
        finally:
            thread_ended.set()

    task = asyncio.create_task(in_thread(blocking))
    while not started:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert thread_ended.is_set()  # waited for: the thread ended before the cancel propagated
    assert started == [0]  # the coroutines after the cancelled one never started


async def test_in_thread_returns_and_raises_like_to_thread():
    def add(a: int, b: int) -> int:
        return run_from_thread(asyncio.sleep(0, result=a + b))

    assert await in_thread(add, 1, b=2) == 3
    with pytest.raises(ZeroDivisionError):
        await in_thread(lambda: 1 / 0)
