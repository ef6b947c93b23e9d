"""The SQLite EventBus passes the EventBus contract, also across processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from ion.core.backends.sqlite.bus import SqliteEventBus
from ion.core.ports.bus import EventBus
from ion.core.testing.bus_contract import EventBusContract


class TestSqliteEventBus(EventBusContract):
    lock_duration = timedelta(milliseconds=400)

    @pytest.fixture
    async def bus(self, tmp_path: Path) -> AsyncIterator[EventBus]:
        b = SqliteEventBus(tmp_path / "bus.db")
        yield b
        await b.aclose()
