"""The SQLite MetadataStore passes the MetadataStore contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ion.core.backends.sqlite.meta import SqliteMetadataStore
from ion.core.ports.meta import MetadataStore
from ion.core.testing.meta_contract import MetadataStoreContract


class TestSqliteMetadataStore(MetadataStoreContract):
    @pytest.fixture
    async def meta(self, tmp_path: Path) -> AsyncIterator[MetadataStore]:
        store = SqliteMetadataStore(tmp_path / "meta.db")
        yield store
        await store.aclose()
