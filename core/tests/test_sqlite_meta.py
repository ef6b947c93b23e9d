"""The SQLite MetadataStore passes the MetadataStore contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ion.core import errors
from ion.core.backends.sqlite.meta import SqliteMetadataStore
from ion.core.ports.meta import MetadataStore
from ion.core.testing.meta_contract import MetadataStoreContract


class TestSqliteMetadataStore(MetadataStoreContract):
    @pytest.fixture
    async def meta(self, tmp_path: Path) -> AsyncIterator[MetadataStore]:
        store = SqliteMetadataStore(tmp_path / "meta.db")
        yield store
        await store.aclose()


async def test_a_stored_document_of_no_known_type_is_refused_by_name(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "meta.db")
    try:
        body = '{"id": "odd", "context": {"correlationId": "c", "documentType": "mystery"}}'
        await store._db.write(
            lambda c: c.execute(
                "INSERT INTO documents (id, doc_type, correlation_id, body) VALUES (?, ?, ?, ?)",
                ("odd", "mystery", "c", body),
            )
        )
        with pytest.raises(errors.ValidationError, match="'odd' has documentType 'mystery'"):
            await store.list_documents("c")
    finally:
        await store.aclose()
