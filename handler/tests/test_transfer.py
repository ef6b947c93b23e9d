"""Bounded transfers: ordered results, a concurrency bound, and no transfer left running on error."""

from __future__ import annotations

import asyncio

import pytest

from ion.handler.transfer import bounded


async def test_results_come_back_in_item_order() -> None:
    async def slow_for_small(i: int) -> int:
        await asyncio.sleep(0.001 * (10 - i))
        return i * i

    assert await bounded(range(10), slow_for_small, limit=4) == [i * i for i in range(10)]


async def test_no_items_no_calls() -> None:
    async def never(_: int) -> int:
        raise AssertionError("called")

    assert await bounded([], never, limit=8) == []


async def test_at_most_limit_calls_run_at_once() -> None:
    running = peak = 0

    async def track(_: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        running -= 1

    await bounded(range(50), track, limit=3)
    assert peak == 3


async def test_a_failure_waits_for_running_calls_and_starts_no_more() -> None:
    release, all_started, failed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    started: list[int] = []
    finished: list[int] = []

    async def transfer(i: int) -> int:
        started.append(i)
        if len(started) == 3:
            all_started.set()
        if i == 1:
            await all_started.wait()
            failed.set()
            raise FileNotFoundError("item 1 is missing")
        await release.wait()
        finished.append(i)
        return i

    task = asyncio.create_task(bounded(range(20), transfer, limit=3))
    await failed.wait()
    await asyncio.sleep(0)  # let the failure reach bounded
    assert not task.done()  # item 1 failed, but items 0 and 2 are still running
    release.set()
    with pytest.raises(FileNotFoundError, match="item 1"):
        await task
    assert sorted(finished) == [0, 2]  # both ran to the end before the error came out
    assert sorted(started) == [0, 1, 2]  # nothing new started after the failure


async def test_the_first_error_is_raised_not_a_group() -> None:
    async def fail(i: int) -> int:
        raise ValueError(f"bad {i}")

    with pytest.raises(ValueError, match="bad 0"):
        await bounded(range(5), fail, limit=1)
