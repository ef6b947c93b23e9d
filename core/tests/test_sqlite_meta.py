"""The SQLite MetadataStore passes the MetadataStore contract."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ion.core import errors
from ion.core.backends.sqlite.meta import SqliteMetadataStore
from ion.core.events import Context, DocumentType, EventMeta
from ion.core.flowindex import FlowQuery, FlowStatus
from ion.core.ports.meta import MetadataStore
from ion.core.records import AttemptState, JobAttempt, RunStatus
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


async def test_a_flow_s_documents_and_attempts_are_read_as_of_one_moment(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "meta.db")
    try:
        context = Context(name="m", event_id="e1", correlation_id="c", parent_event_id="")
        doc = EventMeta(id="e1", context=context.as_document(DocumentType.EVENT_META), type="t.new")
        attempt = JobAttempt(id="m-e1-a1", module="m", event_id="e1", correlation_id="c")
        await store.upsert_event_meta(doc)
        await store.upsert_attempt(attempt)
        assert await store.flow_records("c") == (
            await store.list_documents("c"),
            await store.list_attempts(correlation_id="c"),
        )
        # The snapshot ends with the read: a later write is seen by the next one.
        await store.upsert_attempt(attempt.evolve(module="m"))
        assert len((await store.flow_records("c"))[1]) == 1
        await store.upsert_attempt(attempt.model_copy(update={"id": "m-e1-a2"}))
        assert len((await store.flow_records("c"))[1]) == 2
    finally:
        await store.aclose()


async def test_flows_an_older_ion_wrote_are_indexed_once(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "meta.db")
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    context = Context(name="frontapi", event_id="e1", correlation_id="old", parent_event_id="")
    await store.upsert_event_meta(
        EventMeta(id="e1", context=context.as_document(DocumentType.EVENT_META), type="t.new")
    )
    attempt = JobAttempt(
        id="m-e1-a1",
        module="m",
        event_id="e1",
        correlation_id="old",
        state=AttemptState.SUCCEEDED,
        started_at=started,
    )
    await store.upsert_attempt(attempt)
    # As a database an older Ion wrote: documents and attempts, no flow index.
    tables = ("flow_summaries", "flow_events", "flow_runs", "flow_counts", "flow_modules")

    def forget(c: sqlite3.Connection) -> None:
        for table in (*tables, "flow_index_state"):
            c.execute(f"DELETE FROM {table}")

    await store._db.write(forget)
    await store.aclose()
    reopened = SqliteMetadataStore(tmp_path / "meta.db")
    try:
        [found] = (await reopened.list_flows(FlowQuery())).items
        assert (found.correlation_id, found.status, found.started_at) == (
            "old",
            FlowStatus.SUCCEEDED,
            started,
        )
        assert found.runs == {RunStatus.SUCCEEDED: 1} and found.root_event_type == "t.new"
        # once: a flow's index rows removed again are not rebuilt by the next store
        await reopened._db.write(forget)
        await reopened._db.write(lambda c: c.execute("INSERT INTO flow_index_state VALUES (1)"))
    finally:
        await reopened.aclose()
    again = SqliteMetadataStore(tmp_path / "meta.db")
    try:
        assert (await again.list_flows(FlowQuery())).items == []
    finally:
        await again.aclose()
