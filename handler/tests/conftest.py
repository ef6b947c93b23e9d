"""Fixtures for handler tests: embedded backends on tmp_path and a job for a fresh event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ion.core.contract import JobLayout
from ion.core.events import Context, DocumentType, Event
from ion.core.testing.embedded import EmbeddedBackends
from ion.handler.job import HandlerJob


@pytest.fixture
async def backends(tmp_path: Path) -> AsyncIterator[EmbeddedBackends]:
    """SQLite bus, filesystem blobs and SQLite meta under tmp_path/backends."""
    async with EmbeddedBackends.open(tmp_path / "backends") as b:
        yield b


@pytest.fixture
def job(tmp_path: Path) -> HandlerJob:
    """The module `resize` on a fresh `image.new` event; it may raise image.small/image.tagged."""
    return HandlerJob(
        module="resize",
        event=Event(
            context=Context(
                name="ingest",
                event_id=str(uuid.uuid4()),
                correlation_id=str(uuid.uuid4()),
                parent_event_id=str(uuid.uuid4()),
                document_type=DocumentType.EVENT_META.value,
            ),
            type="image.new",
        ),
        publishes=frozenset({"image.small", "image.tagged"}),
        layout=JobLayout(tmp_path / "job" / "ion"),
    )
