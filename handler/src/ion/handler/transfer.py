"""Run many transfers concurrently with a bound, failing with the first error (not a group)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def bounded(items: Iterable[T], fn: Callable[[T], Awaitable[R]], *, limit: int) -> list[R]:
    """Apply `fn` to every item with at most `limit` running; return results in item order.

    Raises:
        The first error any call raised; the other calls are cancelled.
    """
    semaphore = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with semaphore:
            return await fn(item)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]
