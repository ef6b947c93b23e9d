"""The MetadataStore port: the 2018 documents plus module records and job attempts.

Backends: SQLite (embedded) and Azure Cosmos DB (partitioned by correlation id, so one flow
is one partition). Each passes `ion.core.testing.MetadataStoreContract`. Every document write is
an upsert by id, so a retried commit writes nothing twice. Each eventMeta and attempt write also
updates its flow's summary in the same write (`ion.core.flowindex`), so flows list and filter
by status cheaply.
"""

from __future__ import annotations

from typing import Protocol

from ion.core.documents import FlowDocument
from ion.core.events import EventMeta, Insight, ModuleLogs
from ion.core.flowindex import FlowPage, FlowQuery, FlowSummary
from ion.core.records import AttemptState, JobAttempt, ModuleRecord


class MetadataStore(Protocol):
    """Documents of flows, and the records of modules and job attempts."""

    async def upsert_event_meta(self, doc: EventMeta) -> None:
        """Insert or replace an eventMeta document by id."""
        ...

    async def get_event_meta(self, correlation_id: str, event_id: str) -> EventMeta:
        """Return the eventMeta of an event; raise NotFoundError if missing."""
        ...

    async def find_event_metas(self, id_prefix: str, *, limit: int) -> list[EventMeta]:
        """Return up to `limit` eventMetas, of any flow, whose event id is `id_prefix` or starts
        with it (a short id as the flow trees print it), sorted by event id."""
        ...

    async def upsert_insight(self, doc: Insight) -> None:
        """Insert or replace an insight document by id."""
        ...

    async def upsert_module_logs(self, doc: ModuleLogs) -> None:
        """Insert or replace a modulelogs document by id."""
        ...

    async def list_documents(self, correlation_id: str) -> list[FlowDocument]:
        """Return every 2018 document of a flow (eventMeta, insight, modulelogs), oldest first.

        Each comes back as its model (`EventMeta`, `Insight` or `ModuleLogs`, chosen by
        `context.documentType`); `to_document()` gives the stored 2018 JSON again.

        Raises:
            errors.ValidationError: a stored document has no known type or does not fit it.
        """
        ...

    async def create_module(self, record: ModuleRecord) -> ModuleRecord:
        """Store a new module; return it with its etag; raise ConflictError if the id exists."""
        ...

    async def get_module(self, module_id: str) -> ModuleRecord:
        """Return a module; raise NotFoundError if missing."""
        ...

    async def list_modules(self, *, include_deleted: bool = False) -> list[ModuleRecord]:
        """Return modules sorted by id (empty if none)."""
        ...

    async def replace_module(self, record: ModuleRecord) -> ModuleRecord:
        """Replace a module if `record.etag` is current; raise ConflictError if it is stale."""
        ...

    async def upsert_attempt(self, attempt: JobAttempt) -> None:
        """Insert or replace a job attempt by id."""
        ...

    async def get_attempt(self, correlation_id: str, attempt_id: str) -> JobAttempt:
        """Return a job attempt; raise NotFoundError if missing."""
        ...

    async def list_attempts(
        self,
        *,
        correlation_id: str | None = None,
        module: str | None = None,
        states: frozenset[AttemptState] | None = None,
    ) -> list[JobAttempt]:
        """Return attempts matching every filter given, oldest first."""
        ...

    async def list_flows(self, query: FlowQuery) -> FlowPage:
        """Return one page of flows matching every filter of `query`, newest first.

        Raises:
            errors.ValidationError: the query's cursor is not one a listing returned.
        """
        ...

    async def get_flow_summary(self, correlation_id: str) -> FlowSummary:
        """Return one flow's summary; raise NotFoundError if the store has none."""
        ...

    async def cancel_flow(self, correlation_id: str) -> FlowSummary:
        """Record that a flow is cancelled (idempotent) and return its summary.

        Every process that reads the store sees it: dispatchers run nothing more of the flow.

        Raises:
            errors.NotFoundError: the store has no such flow.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; idempotent."""
        ...
