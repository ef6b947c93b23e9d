"""The embedded MetadataStore: documents, modules and attempts in one SQLite file.

Documents keep the 2018 JSON shape in a `body` column; the columns beside it exist only to
query by correlation id, module and state. Upserts keep a row's first insertion order, so a
flow lists oldest first however often its documents are rewritten.

Each flow has a row in `flow_summaries` with its summary (`ion.core.flowindex`), kept by `_flows` in the
same transaction as every eventMeta and attempt write, so the status, module and time columns
`list_flows` filters on are never behind the flow. An event's subscribers are the live modules
subscribed to its type at that moment. A database an older Ion wrote has its flows indexed
once, the first time a store touches the index (`_flows.backfill`).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ion.core import errors
from ion.core.backends.sqlite import _flows
from ion.core.backends.sqlite._db import SqliteWorker
from ion.core.documents import FlowDocument, parse_document
from ion.core.events import EventMeta, Insight, ModuleLogs
from ion.core.flowindex import (
    FlowPage,
    FlowQuery,
    FlowSummary,
    decode_cursor,
    encode_cursor,
    stamp,
)
from ion.core.records import AttemptState, JobAttempt, ModuleRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT NOT NULL,
    doc_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (doc_type, id)
);
CREATE INDEX IF NOT EXISTS documents_flow ON documents (correlation_id);
CREATE TABLE IF NOT EXISTS modules (
    id TEXT PRIMARY KEY,
    deleted INTEGER NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    module TEXT NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_flow ON attempts (correlation_id);
CREATE INDEX IF NOT EXISTS attempts_module ON attempts (module, state);
"""


class SqliteMetadataStore:
    """MetadataStore on a SQLite file."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteWorker(path, _SCHEMA + _flows.SCHEMA)
        self._indexed = False

    async def _index(self) -> None:
        """Index the flows an older Ion wrote, before this store first touches the index."""
        if not self._indexed:
            await self._db.write(_flows.backfill)
            self._indexed = True

    def __repr__(self) -> str:
        return f"SqliteMetadataStore({str(self._db.path)!r})"

    async def __aenter__(self) -> SqliteMetadataStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _upsert_document(
        self,
        doc_id: str,
        doc_type: str,
        corr: str,
        body: dict[str, Any],
        *,
        then: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        text = json.dumps(body, ensure_ascii=False)

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO documents (id, doc_type, correlation_id, body) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(doc_type, id) DO UPDATE SET body = excluded.body,"
                " correlation_id = excluded.correlation_id",
                (doc_id, doc_type, corr, text),
            )
            if then is not None:
                then(c)

        await self._db.write(write)

    async def upsert_event_meta(self, doc: EventMeta) -> None:
        """Insert or replace an eventMeta document by id (and update its flow's summary)."""
        await self._index()
        await self._upsert_document(
            doc.id,
            "eventMeta",
            doc.context.correlation_id,
            doc.to_document(),
            then=lambda c: _flows.record_event(c, doc),
        )

    async def get_event_meta(self, correlation_id: str, event_id: str) -> EventMeta:
        """Return an event's eventMeta; raise NotFoundError if missing."""
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT body FROM documents WHERE doc_type = 'eventMeta' AND id = ?", (event_id,)
            ).fetchall()
        )
        if not rows:
            raise errors.NotFoundError(f"no eventMeta for event {event_id!r}")
        return EventMeta.model_validate_json(rows[0][0])

    async def find_event_metas(self, id_prefix: str, *, limit: int) -> list[EventMeta]:
        """Return up to `limit` eventMetas whose event id starts with `id_prefix`, by id."""
        # A range of the (doc_type, id) key: [prefix, prefix with its last character bumped).
        end = id_prefix[:-1] + chr(ord(id_prefix[-1]) + 1) if id_prefix else "\U0010ffff"
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT body FROM documents WHERE doc_type = 'eventMeta'"
                " AND id >= ? AND id < ? ORDER BY id LIMIT ?",
                (id_prefix, end, limit),
            ).fetchall()
        )
        return [EventMeta.model_validate_json(r[0]) for r in rows]

    async def upsert_insight(self, doc: Insight) -> None:
        """Insert or replace an insight document by id."""
        await self._upsert_document(
            doc.id, "insight", doc.context.correlation_id, doc.to_document()
        )

    async def upsert_module_logs(self, doc: ModuleLogs) -> None:
        """Insert or replace a modulelogs document by id."""
        await self._upsert_document(
            doc.id, "modulelogs", doc.context.correlation_id, doc.to_document()
        )

    async def list_documents(self, correlation_id: str) -> list[FlowDocument]:
        """Return every document of a flow as its model, oldest first."""
        rows = await self._db.query(
            lambda c: c.execute(
                "SELECT body FROM documents WHERE correlation_id = ? ORDER BY rowid",
                (correlation_id,),
            ).fetchall()
        )
        return [parse_document(json.loads(r[0])) for r in rows]

    async def flow_records(
        self, correlation_id: str
    ) -> tuple[list[FlowDocument], list[JobAttempt]]:
        """A flow's documents and attempts (each oldest first) as of one moment.

        One read transaction: no run can finish between the two reads (see `load_flow`).
        """

        def read(c: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            c.execute("BEGIN")
            try:
                documents = c.execute(
                    "SELECT body FROM documents WHERE correlation_id = ? ORDER BY rowid",
                    (correlation_id,),
                ).fetchall()
                attempts = c.execute(
                    "SELECT body FROM attempts WHERE correlation_id = ? ORDER BY rowid",
                    (correlation_id,),
                ).fetchall()
            finally:
                c.execute("COMMIT")  # a read transaction: ends the snapshot
            return documents, attempts

        documents, attempts = await self._db.query(read)
        return (
            [parse_document(json.loads(r[0])) for r in documents],
            [JobAttempt.model_validate_json(r[0]) for r in attempts],
        )

    async def create_module(self, record: ModuleRecord) -> ModuleRecord:
        """Store a new module; raise ConflictError if the id exists."""
        stored = record.model_copy(update={"etag": uuid.uuid4().hex})

        def write(c: sqlite3.Connection) -> None:
            try:
                c.execute(
                    "INSERT INTO modules (id, deleted, etag, body) VALUES (?, ?, ?, ?)",
                    (stored.id, int(stored.deleted), stored.etag, stored.model_dump_json()),
                )
            except sqlite3.IntegrityError as err:
                raise errors.ConflictError(f"module {record.id!r} exists already") from err

        await self._db.write(write)
        return stored

    async def get_module(self, module_id: str) -> ModuleRecord:
        """Return a module; raise NotFoundError if missing."""
        row = await self._db.query(
            lambda c: c.execute("SELECT body FROM modules WHERE id = ?", (module_id,)).fetchone()
        )
        if row is None:
            raise errors.NotFoundError(
                f"module {module_id!r} does not exist; see `ion module list`"
            )
        return ModuleRecord.model_validate_json(row[0])

    async def list_modules(self, *, include_deleted: bool = False) -> list[ModuleRecord]:
        """Return modules sorted by id."""
        sql = "SELECT body FROM modules" + ("" if include_deleted else " WHERE deleted = 0")
        rows = await self._db.query(lambda c: c.execute(sql + " ORDER BY id").fetchall())
        return [ModuleRecord.model_validate_json(r[0]) for r in rows]

    async def replace_module(self, record: ModuleRecord) -> ModuleRecord:
        """Replace a module if its etag is current; raise ConflictError if stale."""
        stored = record.model_copy(update={"etag": uuid.uuid4().hex})

        def write(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "UPDATE modules SET deleted = ?, etag = ?, body = ? WHERE id = ? AND etag = ?",
                (
                    int(stored.deleted),
                    stored.etag,
                    stored.model_dump_json(),
                    record.id,
                    record.etag,
                ),
            )
            if cur.rowcount != 1:
                raise errors.ConflictError(
                    f"module {record.id!r} changed since it was read (or is gone); read it again"
                )

        await self._db.write(write)
        return stored

    async def upsert_attempt(self, attempt: JobAttempt) -> None:
        """Insert or replace a job attempt by id (and update its flow's summary)."""
        await self._index()

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO attempts (id, correlation_id, module, state, body) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body",
                (
                    attempt.id,
                    attempt.correlation_id,
                    attempt.module,
                    attempt.state.value,
                    attempt.model_dump_json(),
                ),
            )
            _flows.record_attempt(c, attempt)

        await self._db.write(write)

    async def get_attempt(self, correlation_id: str, attempt_id: str) -> JobAttempt:
        """Return a job attempt; raise NotFoundError if missing."""
        rows = await self._db.read(
            lambda c: c.execute("SELECT body FROM attempts WHERE id = ?", (attempt_id,)).fetchall()
        )
        if not rows:
            raise errors.NotFoundError(f"no job attempt {attempt_id!r}")
        return JobAttempt.model_validate_json(rows[0][0])

    async def list_attempts(
        self,
        *,
        correlation_id: str | None = None,
        module: str | None = None,
        states: frozenset[AttemptState] | None = None,
    ) -> list[JobAttempt]:
        """Return attempts matching every filter given, oldest first."""
        clauses: list[str] = []
        args: list[str] = []
        if correlation_id is not None:
            clauses.append("correlation_id = ?")
            args.append(correlation_id)
        if module is not None:
            clauses.append("module = ?")
            args.append(module)
        if states is not None:
            clauses.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(sorted(s.value for s in states))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._db.query(
            lambda c: c.execute(f"SELECT body FROM attempts{where} ORDER BY rowid", args).fetchall()
        )
        return [JobAttempt.model_validate_json(r[0]) for r in rows]

    async def list_flows(self, query: FlowQuery) -> FlowPage:
        """Return one page of flows matching every filter of `query`, newest first."""
        await self._index()
        clauses: list[str] = []
        args: list[str | int] = []
        if query.status:
            clauses.append(f"status IN ({', '.join('?' * len(query.status))})")
            args.extend(s.value for s in query.status)
        if query.root_event_type:
            clauses.append("root_type = ?")
            args.append(query.root_event_type)
        if query.module:
            clauses.append(
                "EXISTS (SELECT 1 FROM flow_modules m WHERE m.module = ?"
                " AND m.correlation_id = flow_summaries.correlation_id)"
            )
            args.append(query.module)
        if query.started_after is not None:
            clauses.append("started_at >= ?")
            args.append(stamp(query.started_after))
        if query.started_before is not None:
            clauses.append("started_at < ?")
            args.append(stamp(query.started_before))
        if query.id_prefix:
            clauses.append("substr(correlation_id, 1, ?) = ?")
            args.extend([len(query.id_prefix), query.id_prefix])
        if query.cursor:
            clauses.append("sort_key < ?")
            args.append(decode_cursor(query.cursor))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        args.append(query.limit + 1)
        rows = await self._db.query(
            lambda c: c.execute(
                f"SELECT sort_key, summary FROM flow_summaries{where} ORDER BY sort_key DESC LIMIT ?",
                args,
            ).fetchall()
        )
        items = [FlowSummary.model_validate_json(r[1]) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        return FlowPage(
            items=items, next_cursor=encode_cursor(rows[query.limit - 1][0]) if more else ""
        )

    async def get_flow_summary(self, correlation_id: str) -> FlowSummary:
        """Return one flow's summary; raise NotFoundError if the store has none."""
        await self._index()
        # A point read, inline: dispatchers ask before every job whether its flow is cancelled,
        # and must not queue behind long reads (a flow's tree, a listing) on the reader thread.
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT summary FROM flow_summaries WHERE correlation_id = ?", (correlation_id,)
            ).fetchone()
        )
        if row is None:
            raise errors.NotFoundError(f"no flow with correlation id {correlation_id!r}")
        return FlowSummary.model_validate_json(row[0])

    async def cancel_flow(self, correlation_id: str) -> FlowSummary:
        """Record that a flow is cancelled (idempotent) and return its summary."""
        await self._index()

        def write(c: sqlite3.Connection) -> None:
            if not _flows.cancel(c, correlation_id):
                raise errors.NotFoundError(f"no flow with correlation id {correlation_id!r}")

        await self._db.write(write)
        return await self.get_flow_summary(correlation_id)

    async def aclose(self) -> None:
        """Close the database; idempotent."""
        await self._db.aclose()
