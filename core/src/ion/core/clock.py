"""Time as an injectable dependency, so timing logic (backoff, locks, deadlines) is testable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the time and waits."""

    def now(self) -> datetime:
        """Return the current UTC time (timezone-aware)."""
        ...

    async def sleep(self, delay: timedelta) -> None:
        """Wait for `delay`."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)

    async def sleep(self, delay: timedelta) -> None:
        """Wait for `delay` on the event loop."""
        await asyncio.sleep(max(0.0, delay.total_seconds()))


class ManualClock:
    """A clock that moves only when told to; `sleep` returns once `advance` passes its deadline."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._changed = asyncio.Condition()

    def now(self) -> datetime:
        """Return the manual time."""
        return self._now

    async def sleep(self, delay: timedelta) -> None:
        """Wait until the manual time reaches now + delay."""
        deadline = self._now + delay
        async with self._changed:
            await self._changed.wait_for(lambda: self._now >= deadline)

    async def advance(self, delta: timedelta) -> None:
        """Move time forward and wake sleepers whose deadline passed."""
        self._now += delta
        async with self._changed:
            self._changed.notify_all()
        await asyncio.sleep(0)
