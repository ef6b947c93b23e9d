"""Run many transfers concurrently with a bound, failing with the first error (not a group).

Transfers run in worker threads (`asyncio.to_thread`), which cancelling a task does not stop.
So a failure does not cancel the other transfers: it stops new ones from starting and waits
for those already running, and only then raises. When `bounded` returns or raises, nothing it
started is still writing (a cancelled task would leave its thread writing `.part` files into
the job directory after prepare had already failed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def bounded(items: Iterable[T], fn: Callable[[T], Awaitable[R]], *, limit: int) -> list[R]:
    """Apply `fn` to every item with at most `limit` running; return results in item order.

    Raises:
        The first error any call raised, once the calls already running have finished.
    """
    work = list(enumerate(items))
    results: dict[int, R] = {}
    failures: list[Exception] = []
    pending = iter(work)

    async def worker() -> None:
        for index, item in pending:  # one shared iterator: each item is taken once
            if failures:
                return
            try:
                results[index] = await fn(item)
            except Exception as err:
                failures.append(err)
                return

    # A few workers instead of a task per item: 10,000 files make 16 tasks, not 10,000.
    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(limit, len(work)))):
            group.create_task(worker())
    if failures:
        raise failures[0]
    return [results[i] for i in range(len(work))]
