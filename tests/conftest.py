"""Fixtures of the cross-service tests: embedded backends and dispatcher processes over them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ion.core.testing.embedded import EmbeddedBackends
from tests.procs import Dispatchers


@pytest.fixture
async def backends(tmp_path: Path) -> AsyncIterator[EmbeddedBackends]:
    """Embedded backends under tmp_path, with a watcher on `thing.done`."""
    found = EmbeddedBackends.open(tmp_path / "ion")
    await found.watch("thing.done")
    yield found
    for backend in (found.bus, found.blobs, found.meta):
        await backend.aclose()


@pytest.fixture
def dispatchers(backends: EmbeddedBackends, tmp_path: Path) -> Iterator[Dispatchers]:
    """Dispatcher processes over `backends`, killed at the end of the test."""
    d = Dispatchers(backends, tmp_path)
    yield d
    for proc in d.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
