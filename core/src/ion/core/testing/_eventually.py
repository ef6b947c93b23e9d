"""Wait for a condition with a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]], *, timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Return the first truthy result of `check()`, polling until `timeout` seconds pass.

    Raises:
        AssertionError: the condition never held; the last result or error is in the message.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result  # type: ignore[return-value,unused-ignore]  # truthy T, awaited if needed
            last = result
        except AssertionError as err:
            last = err
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")
        await asyncio.sleep(interval)
