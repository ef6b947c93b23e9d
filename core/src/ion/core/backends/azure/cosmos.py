"""The Azure Cosmos DB MetadataStore (SQL API): the 2018 documents, modules and job attempts.

Containers, created if missing: `documents` and `attempts`, partitioned by /correlationId so one
flow is one partition, and `modules`, partitioned by /id and replaced under if-match on `_etag`
(412 becomes ConflictError). Documents keep the 2018 shape (nested context) plus a top-level
`correlationId`. Every write is an upsert by id that keeps the `_ionSeq` of the first write
(microseconds since the epoch, strictly increasing in a process), so "oldest first" is
ORDER BY `_ionSeq` and a rewrite does not move a document. Reads are queries with the partition key
in WHERE, never point reads: the local test server answers point reads of missing ids with 500.
Queries page with continuation tokens; OFFSET/LIMIT, GROUP BY, DISTINCT, TTL and batch are avoided.

A fourth container, `flows` (partitioned by /correlationId, one item per flow), keeps each flow's
ledger and summary (`ion.core.flowindex`). Every eventMeta and attempt write then updates it:
read the item (and its etag), apply the change, replace under if-match (create if new), and on
a conflict read again and retry, so concurrent writers of one flow never lose each other's
changes. An event's subscribers are the live modules subscribed to its type at that moment (a
query of `modules`). `list_flows` is one cross-partition query on the summary's fields, newest
first by a `sortKey`, paged by a cursor holding the last key returned. The flow item is read and
rewritten whole on each write, so a write costs more the larger its flow (about 100 bytes per
run): fine for flows of hundreds of runs, costly (request units) for many thousands.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient

from ion.core import errors
from ion.core.backends.azure._errors import translate
from ion.core.backends.azure._trust import trusted_ca_file, trusting_transport
from ion.core.documents import FlowDocument, parse_document
from ion.core.events import DocumentType, EventMeta, Insight, ModuleLogs
from ion.core.flowindex import (
    FlowLedger,
    FlowPage,
    FlowQuery,
    FlowSummary,
    decode_cursor,
    encode_cursor,
    sort_key,
    stamp,
)
from ion.core.records import AttemptState, JobAttempt, ModuleRecord

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = ["CosmosMetadataOptions", "CosmosMetadataStore"]

log = logging.getLogger(__name__)

DOCUMENTS = "documents"
ATTEMPTS = "attempts"
MODULES = "modules"
FLOWS = "flows"
FLOW_UPDATE_TRIES = 50
"""Most read-change-replace rounds of one flow's summary under concurrent writers."""
SEQ_FIELD = "_ionSeq"
"""Order of first write, in microseconds since the epoch (fits a JSON double exactly)."""
PARTITION_FIELD = "correlationId"

_URL_EXAMPLE = "cosmos://mycosmosaccount/ion"
_BAD_ID_CHARS = frozenset("/\\?#")


class CosmosMetadataOptions(TypedDict, total=False):
    """Keyword options of the `CosmosMetadataStore` constructors."""

    page_size: int
    """Items per query page (default 100)."""
    connect_timeout: timedelta
    """Per-request connection timeout (default 20 s)."""
    read_timeout: timedelta
    """Per-request socket read timeout (default 60 s)."""
    retries: int
    """Retries of a failed request (default 5; throttling has the SDK's own policy)."""


class _Sequence:
    """Strictly increasing microsecond timestamps, shared by every store in the process."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(time.time_ns() // 1000, self._last + 1)
            return self._last


_SEQUENCE = _Sequence()


@dataclass(frozen=True, slots=True)
class _Containers:
    documents: ContainerProxy
    attempts: ContainerProxy
    modules: ContainerProxy
    flows: ContainerProxy


def _check_id(value: str, field: str) -> str:
    if not value or len(value) > 255 or any(c in _BAD_ID_CHARS for c in value):
        raise errors.ValidationError(
            f"{field} {value!r} cannot be a Cosmos DB id (1-255 characters, none of / \\ ? #)",
            field=field,
            rule="cosmos-id",
        )
    return value


def _is_loopback(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _document(item: Mapping[str, Any]) -> dict[str, Any]:
    """Return a stored item in the 2018 shape: no system fields, no partition key copy."""
    return {k: v for k, v in item.items() if not k.startswith("_") and k != PARTITION_FIELD}


class CosmosMetadataStore:
    """MetadataStore on an Azure Cosmos DB (SQL API) database, through the aio SDK.

    Build it with `from_url` or the constructor; it is an async context manager and must be
    closed with `aclose()`.
    """

    def __init__(
        self,
        endpoint: str,
        database: str,
        credential: AsyncTokenCredential | str,
        *,
        verify_tls: bool | str = True,
        owned_credential: AsyncTokenCredential | None = None,
        **options: Unpack[CosmosMetadataOptions],
    ) -> None:
        """Connect to `endpoint` (``https://<account>.documents.azure.com:443/``).

        `verify_tls=False` is accepted only for a loopback endpoint (the local test server); a
        path trusts the CA bundle in that file instead of the system's;
        `owned_credential`, if given, is closed with the store.

        Raises:
            errors.ConfigError: TLS verification off for a remote endpoint, or a bad option.
        """
        if verify_tls is False and not _is_loopback(endpoint):
            raise errors.ConfigError(
                "ION_AZURE_COSMOS_VERIFY_TLS=0 is allowed only for a loopback endpoint (the local"
                f" test server), not {urlsplit(endpoint).hostname!r}; unset it"
            )
        self._database_name = _check_id(database, "database")
        self._page_size = options.get("page_size", 100)
        if self._page_size < 1:
            raise errors.ConfigError(f"page_size must be at least 1, not {self._page_size}")
        self._endpoint = endpoint
        extra: dict[str, Any] = {}
        if isinstance(verify_tls, str):  # azure-cosmos drops a CA path: give it a transport
            extra["transport"] = trusting_transport(verify_tls)
            verify_tls = True
        self._client = CosmosClient(
            endpoint,
            credential=credential,
            connection_verify=verify_tls,
            **extra,
            connection_timeout=int(
                options.get("connect_timeout", timedelta(seconds=20)).total_seconds()
            ),
            read_timeout=options.get("read_timeout", timedelta(seconds=60)).total_seconds(),
            retry_total=options.get("retries", 5),
        )
        self._owned_credential = owned_credential
        self._containers: _Containers | None = None
        self._init_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        credential: AsyncTokenCredential | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Unpack[CosmosMetadataOptions],
    ) -> CosmosMetadataStore:
        """Return the store of ``cosmos://<account>/<database>``, credentials from the environment.

        Without `credential`: ``ION_AZURE_COSMOS_ENDPOINT`` and ``ION_AZURE_COSMOS_KEY`` if set
        (emulator, key auth), else `DefaultAzureCredential` on
        ``https://<account>.documents.azure.com:443/`` (the endpoint variable alone overrides the
        endpoint). ``ION_AZURE_COSMOS_VERIFY_TLS=0`` is honoured for a loopback endpoint only.

        Raises:
            errors.ConfigError: the URL is malformed, or the variables disagree.
        """
        parts = urlsplit(url)
        account, database = parts.netloc, parts.path.strip("/")
        if parts.scheme != "cosmos" or not account or not database or "/" in database:
            raise errors.ConfigError(
                f"ION_META__URL={url!r} is not a Cosmos DB URL; write it like {_URL_EXAMPLE}"
            )
        env = os.environ if environ is None else environ
        endpoint = env.get("ION_AZURE_COSMOS_ENDPOINT", "")
        key = env.get("ION_AZURE_COSMOS_KEY", "")
        verify = env.get("ION_AZURE_COSMOS_VERIFY_TLS", "1").strip().lower()
        if verify not in ("0", "1", "true", "false", ""):
            raise errors.ConfigError(
                f"ION_AZURE_COSMOS_VERIFY_TLS={verify!r}: use 1 (default) or 0 (local test server)"
            )
        verify_tls: bool | str = verify not in ("0", "false")
        if verify_tls and (ca_file := trusted_ca_file(env)):
            verify_tls = ca_file
        if key and not endpoint:
            raise errors.ConfigError(
                "ION_AZURE_COSMOS_KEY is set without ION_AZURE_COSMOS_ENDPOINT; set both"
                " (e.g. ION_AZURE_COSMOS_ENDPOINT=https://myaccount.documents.azure.com:443/)"
            )
        endpoint = endpoint or f"https://{account}.documents.azure.com:443/"
        if credential is None and key:
            return cls(endpoint, database, key, verify_tls=verify_tls, **options)
        owned: AsyncTokenCredential | None = None
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = owned = DefaultAzureCredential()
        return cls(
            endpoint, database, credential, verify_tls=verify_tls, owned_credential=owned, **options
        )

    def __repr__(self) -> str:
        return f"CosmosMetadataStore({self._endpoint!r}, {self._database_name!r})"

    async def __aenter__(self) -> CosmosMetadataStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _ready(self) -> _Containers:
        """Create the database and containers if missing (once), and return the containers."""
        if self._containers is not None:
            return self._containers
        async with self._init_lock:
            if self._containers is None:
                try:
                    db = await self._client.create_database_if_not_exists(self._database_name)
                    documents = await db.create_container_if_not_exists(
                        DOCUMENTS, partition_key=PartitionKey(path=f"/{PARTITION_FIELD}")
                    )
                    attempts = await db.create_container_if_not_exists(
                        ATTEMPTS, partition_key=PartitionKey(path=f"/{PARTITION_FIELD}")
                    )
                    modules = await db.create_container_if_not_exists(
                        MODULES, partition_key=PartitionKey(path="/id")
                    )
                    flows = await db.create_container_if_not_exists(
                        FLOWS, partition_key=PartitionKey(path=f"/{PARTITION_FIELD}")
                    )
                except AzureError as err:
                    raise translate(
                        err, f"opening Cosmos DB database {self._database_name!r}"
                    ) from err
                self._containers = _Containers(documents, attempts, modules, flows)
            return self._containers

    async def _query(
        self,
        container: ContainerProxy,
        sql: str,
        parameters: Mapping[str, Any],
        *,
        partition_key: str | None,
        action: str,
    ) -> list[dict[str, Any]]:
        """Run a query page by page (continuation tokens) and return every item."""
        params: list[dict[str, object]] = [{"name": k, "value": v} for k, v in parameters.items()]
        found: list[dict[str, Any]] = []
        try:
            if partition_key is None:
                pager = container.query_items(
                    sql, parameters=params, max_item_count=self._page_size
                )
            else:
                pager = container.query_items(
                    sql,
                    parameters=params,
                    partition_key=partition_key,
                    max_item_count=self._page_size,
                )
            async for page in pager.by_page():
                async for item in page:
                    found.append(item)
        except AzureError as err:
            raise translate(err, action) from err
        return found

    async def _upsert_keeping_order(
        self, container: ContainerProxy, body: dict[str, Any], partition_key: str, action: str
    ) -> None:
        """Upsert by id, keeping the `_ionSeq` of the item's first write."""
        item = {**body, SEQ_FIELD: _SEQUENCE.next()}
        try:
            await container.create_item(item)
            return
        except ResourceExistsError:
            pass  # a rewrite: keep its place in the flow
        except AzureError as err:
            raise translate(err, action) from err
        seqs = await self._query(
            container,
            f"SELECT VALUE c.{SEQ_FIELD} FROM c WHERE c.{PARTITION_FIELD} = @pk AND c.id = @id",
            {"@pk": partition_key, "@id": body["id"]},
            partition_key=partition_key,
            action=action,
        )
        if seqs and isinstance(seqs[0], int | float):
            item[SEQ_FIELD] = int(seqs[0])
        try:
            await container.upsert_item(item)
        except AzureError as err:
            raise translate(err, action) from err

    # -- 2018 documents ----------------------------------------------------------------------

    async def _upsert_document(self, doc: EventMeta | Insight | ModuleLogs, kind: str) -> None:
        corr = doc.context.correlation_id
        _check_id(doc.id, f"{kind} id")
        _check_id(corr, "correlation id")
        containers = await self._ready()
        body = {**doc.to_document(), PARTITION_FIELD: corr}
        await self._upsert_keeping_order(
            containers.documents, body, corr, f"writing {kind} document {doc.id!r}"
        )

    async def upsert_event_meta(self, doc: EventMeta) -> None:
        """Insert or replace an eventMeta document by id (and update its flow's summary)."""
        await self._upsert_document(doc, DocumentType.EVENT_META.value)
        subscribers = await self._subscribers(doc.type)
        await self._update_flow(
            doc.context.correlation_id,
            lambda ledger: ledger.record_event(doc, subscribers, datetime.now(UTC)),
        )

    async def upsert_insight(self, doc: Insight) -> None:
        """Insert or replace an insight document by id."""
        await self._upsert_document(doc, DocumentType.INSIGHT.value)

    async def upsert_module_logs(self, doc: ModuleLogs) -> None:
        """Insert or replace a modulelogs document by id."""
        await self._upsert_document(doc, DocumentType.MODULE_LOGS.value)

    async def get_event_meta(self, correlation_id: str, event_id: str) -> EventMeta:
        """Return the eventMeta of an event; raise NotFoundError if missing."""
        containers = await self._ready()
        items = await self._query(
            containers.documents,
            f"SELECT * FROM c WHERE c.{PARTITION_FIELD} = @pk AND c.id = @id"
            " AND c.context.documentType = @type",
            {"@pk": correlation_id, "@id": event_id, "@type": DocumentType.EVENT_META.value},
            partition_key=correlation_id,
            action=f"reading eventMeta {event_id!r}",
        )
        if not items:
            raise errors.NotFoundError(
                f"no eventMeta for event {event_id!r} in flow {correlation_id!r}"
            )
        return EventMeta.model_validate(_document(items[0]))

    async def find_event_metas(self, id_prefix: str, *, limit: int) -> list[EventMeta]:
        """Return up to `limit` eventMetas whose event id starts with `id_prefix`, by id (a
        query across every flow's partition)."""
        containers = await self._ready()
        items = await self._query(
            containers.documents,
            "SELECT * FROM c WHERE c.context.documentType = @type AND STARTSWITH(c.id, @prefix)",
            {"@type": DocumentType.EVENT_META.value, "@prefix": id_prefix},
            partition_key=None,
            action=f"looking for events whose id starts with {id_prefix!r}",
        )
        found = sorted((_document(item) for item in items), key=lambda d: str(d["id"]))
        return [EventMeta.model_validate(d) for d in found[:limit]]

    async def list_documents(self, correlation_id: str) -> list[FlowDocument]:
        """Return every 2018 document of a flow (eventMeta, insight, modulelogs), oldest first."""
        containers = await self._ready()
        items = await self._query(
            containers.documents,
            f"SELECT * FROM c WHERE c.{PARTITION_FIELD} = @pk ORDER BY c.{SEQ_FIELD}",
            {"@pk": correlation_id},
            partition_key=correlation_id,
            action=f"listing the documents of flow {correlation_id!r}",
        )
        return [parse_document(_document(item)) for item in items]

    # -- modules -----------------------------------------------------------------------------

    @staticmethod
    def _module(item: Mapping[str, Any]) -> ModuleRecord:
        return ModuleRecord.model_validate({**_document(item), "etag": item.get("_etag", "")})

    async def create_module(self, record: ModuleRecord) -> ModuleRecord:
        """Store a new module; return it with its etag; raise ConflictError if the id exists."""
        _check_id(record.id, "module id")
        containers = await self._ready()
        try:
            stored = await containers.modules.create_item(
                record.model_dump(mode="json", exclude={"etag"})
            )
        except ResourceExistsError as err:
            raise errors.ConflictError(f"module {record.id!r} exists already") from err
        except AzureError as err:
            raise translate(err, f"creating module {record.id!r}") from err
        return record.model_copy(update={"etag": stored["_etag"]})

    async def get_module(self, module_id: str) -> ModuleRecord:
        """Return a module; raise NotFoundError if missing."""
        containers = await self._ready()
        items = await self._query(
            containers.modules,
            "SELECT * FROM c WHERE c.id = @id",
            {"@id": module_id},
            partition_key=module_id,
            action=f"reading module {module_id!r}",
        )
        if not items:
            raise errors.NotFoundError(
                f"module {module_id!r} does not exist; see `ion module list`"
            )
        return self._module(items[0])

    async def list_modules(self, *, include_deleted: bool = False) -> list[ModuleRecord]:
        """Return modules sorted by id (empty if none)."""
        containers = await self._ready()
        where = "" if include_deleted else " WHERE c.deleted = false"
        items = await self._query(
            containers.modules,
            f"SELECT * FROM c{where} ORDER BY c.id",
            {},
            partition_key=None,
            action="listing modules",
        )
        return [self._module(item) for item in items]

    async def replace_module(self, record: ModuleRecord) -> ModuleRecord:
        """Replace a module if `record.etag` is current; raise ConflictError if it is stale."""
        stale = errors.ConflictError(
            f"module {record.id!r} changed since it was read (or is gone); read it again"
        )
        if not record.etag:
            raise stale
        containers = await self._ready()
        try:
            stored = await containers.modules.replace_item(
                record.id,
                record.model_dump(mode="json", exclude={"etag"}),
                etag=record.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except AzureError as err:
            if getattr(err, "status_code", None) in (404, 412):
                raise stale from err
            raise translate(err, f"replacing module {record.id!r}") from err
        return record.model_copy(update={"etag": stored["_etag"]})

    # -- job attempts ------------------------------------------------------------------------

    async def upsert_attempt(self, attempt: JobAttempt) -> None:
        """Insert or replace a job attempt by id."""
        _check_id(attempt.id, "attempt id")
        _check_id(attempt.correlation_id, "correlation id")
        containers = await self._ready()
        body = {**attempt.model_dump(mode="json"), PARTITION_FIELD: attempt.correlation_id}
        await self._upsert_keeping_order(
            containers.attempts,
            body,
            attempt.correlation_id,
            f"writing job attempt {attempt.id!r}",
        )
        await self._update_flow(
            attempt.correlation_id,
            lambda ledger: ledger.record_attempt(attempt, datetime.now(UTC)),
        )

    async def get_attempt(self, correlation_id: str, attempt_id: str) -> JobAttempt:
        """Return a job attempt; raise NotFoundError if missing."""
        containers = await self._ready()
        items = await self._query(
            containers.attempts,
            f"SELECT * FROM c WHERE c.{PARTITION_FIELD} = @pk AND c.id = @id",
            {"@pk": correlation_id, "@id": attempt_id},
            partition_key=correlation_id,
            action=f"reading job attempt {attempt_id!r}",
        )
        if not items:
            raise errors.NotFoundError(f"no job attempt {attempt_id!r} in flow {correlation_id!r}")
        return JobAttempt.model_validate(items[0])

    async def list_attempts(
        self,
        *,
        correlation_id: str | None = None,
        module: str | None = None,
        states: frozenset[AttemptState] | None = None,
    ) -> list[JobAttempt]:
        """Return attempts matching every filter given, oldest first.

        With a correlation id this is a single-partition query; without, it fans out.
        """
        containers = await self._ready()
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if correlation_id is not None:
            clauses.append(f"c.{PARTITION_FIELD} = @pk")
            params["@pk"] = correlation_id
        if module is not None:
            clauses.append("c.module = @module")
            params["@module"] = module
        if states is not None:
            clauses.append("ARRAY_CONTAINS(@states, c.state)")
            params["@states"] = sorted(s.value for s in states)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        items = await self._query(
            containers.attempts,
            f"SELECT * FROM c{where} ORDER BY c.{SEQ_FIELD}",
            params,
            partition_key=correlation_id,
            action="listing job attempts",
        )
        return [JobAttempt.model_validate(item) for item in items]

    # -- flows -------------------------------------------------------------------------------

    async def _subscribers(self, event_type: str) -> list[str]:
        """The live modules subscribed to `event_type` (by name)."""
        containers = await self._ready()
        names = await self._query(
            containers.modules,
            "SELECT VALUE c.spec.name FROM c WHERE c.deleted = false"
            " AND c.spec.subscribes_to = @type",
            {"@type": event_type},
            partition_key=None,
            action=f"listing the subscribers of {event_type!r}",
        )
        return [str(n) for n in names]

    async def _flow_item(self, correlation_id: str) -> dict[str, Any] | None:
        containers = await self._ready()
        items = await self._query(
            containers.flows,
            f"SELECT * FROM c WHERE c.{PARTITION_FIELD} = @pk AND c.id = @pk",
            {"@pk": correlation_id},
            partition_key=correlation_id,
            action=f"reading the summary of flow {correlation_id!r}",
        )
        return items[0] if items else None

    async def _update_flow(
        self, correlation_id: str, change: Callable[[FlowLedger], None]
    ) -> FlowSummary:
        """Apply `change` to the flow's ledger under optimistic concurrency; return the summary."""
        containers = await self._ready()
        action = f"updating the summary of flow {correlation_id!r}"
        for _ in range(FLOW_UPDATE_TRIES):
            item = await self._flow_item(correlation_id)
            ledger = (
                FlowLedger.model_validate(item["ledger"])
                if item is not None
                else FlowLedger.new(correlation_id, datetime.now(UTC))
            )
            change(ledger)
            summary = ledger.summary()
            body = {
                "id": correlation_id,
                PARTITION_FIELD: correlation_id,
                "sortKey": sort_key(ledger.started_at, correlation_id),
                "startedAt": stamp(ledger.started_at),
                "status": summary.status.value,
                "rootType": summary.root_event_type,
                "modules": summary.modules,
                "summary": summary.model_dump(mode="json"),
                "ledger": ledger.model_dump(mode="json", exclude_defaults=True),
            }
            try:
                if item is None:
                    await containers.flows.create_item(body)
                else:
                    await containers.flows.replace_item(
                        correlation_id,
                        body,
                        etag=item["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceExistsError, ResourceModifiedError):
                continue  # another writer of the flow came first: read its change, apply again
            except AzureError as err:
                if getattr(err, "status_code", None) == 412:
                    continue
                raise translate(err, action) from err
            return summary
        raise errors.TransientError(f"{action}: too many concurrent writers; retry")

    async def list_flows(self, query: FlowQuery) -> FlowPage:
        """Return one page of flows matching every filter of `query`, newest first."""
        containers = await self._ready()
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if query.status:
            clauses.append("ARRAY_CONTAINS(@statuses, c.status)")
            params["@statuses"] = [s.value for s in query.status]
        if query.root_event_type:
            clauses.append("c.rootType = @type")
            params["@type"] = query.root_event_type
        if query.module:
            clauses.append("ARRAY_CONTAINS(c.modules, @module)")
            params["@module"] = query.module
        if query.started_after is not None:
            clauses.append("c.startedAt >= @after")
            params["@after"] = stamp(query.started_after)
        if query.started_before is not None:
            clauses.append("c.startedAt < @before")
            params["@before"] = stamp(query.started_before)
        if query.id_prefix:
            clauses.append("STARTSWITH(c.id, @prefix)")
            params["@prefix"] = query.id_prefix
        if query.cursor:
            clauses.append("c.sortKey < @cursor")
            params["@cursor"] = decode_cursor(query.cursor)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        found: list[dict[str, Any]] = []
        try:
            pager = containers.flows.query_items(
                f"SELECT c.sortKey, c.summary FROM c{where} ORDER BY c.sortKey DESC",
                parameters=[{"name": k, "value": v} for k, v in params.items()],
                max_item_count=min(query.limit + 1, self._page_size),
            )
            async for item in pager:
                found.append(item)
                if len(found) > query.limit:
                    break
        except AzureError as err:
            raise translate(err, "listing flows") from err
        items = [FlowSummary.model_validate(i["summary"]) for i in found[: query.limit]]
        more = len(found) > query.limit
        cursor = encode_cursor(found[query.limit - 1]["sortKey"]) if more else ""
        return FlowPage(items=items, next_cursor=cursor)

    async def get_flow_summary(self, correlation_id: str) -> FlowSummary:
        """Return one flow's summary; raise NotFoundError if the store has none."""
        containers = await self._ready()
        # Only the summary: the ledger beside it grows with the flow, and dispatchers ask this
        # about every running job's flow each second (`ion flow cancel`).
        found = await self._query(
            containers.flows,
            f"SELECT VALUE c.summary FROM c WHERE c.{PARTITION_FIELD} = @pk AND c.id = @pk",
            {"@pk": correlation_id},
            partition_key=correlation_id,
            action=f"reading the summary of flow {correlation_id!r}",
        )
        if not found:
            raise errors.NotFoundError(f"no flow with correlation id {correlation_id!r}")
        return FlowSummary.model_validate(found[0])

    async def cancel_flow(self, correlation_id: str) -> FlowSummary:
        """Record that a flow is cancelled (idempotent) and return its summary."""
        await self.get_flow_summary(correlation_id)  # NotFoundError for an unknown flow
        return await self._update_flow(
            correlation_id, lambda ledger: ledger.cancel(datetime.now(UTC))
        )

    async def aclose(self) -> None:
        """Close the client (and the credential the store created); idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._client.close()
        if self._owned_credential is not None:
            await self._owned_credential.close()
