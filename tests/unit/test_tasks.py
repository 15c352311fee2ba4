"""Ending tasks for sure: a cancellation swallowed once (as nats-py's close() does) is sent again."""

from __future__ import annotations

import asyncio

import pytest

from shared.common.tasks import cancel_until_done, finish_within

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
