"""The SQLite store's flow index: each flow's events, runs and summary, kept in tables.

The same rules as `ion.core.flowindex.FlowLedger` (the Cosmos DB store's), kept relationally so
that a write costs the same however large its flow is: an eventMeta or attempt write touches
its event's row, its run's row and the flow's counters, and only a flow whose runs have all
settled reads its events again (for gaps and unhandled roots). Every function runs inside the
caller's write transaction, on the connection it is given.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from ion.core.events import ROOT_PUBLISHER, EventMeta
from ion.core.flowindex import FlowStatus, FlowSummary, derive_status, sort_key, stamp
from ion.core.records import JobAttempt, RunStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS flow_summaries (
    correlation_id TEXT PRIMARY KEY,
    sort_key TEXT NOT NULL,
    started_at TEXT NOT NULL,
    status TEXT NOT NULL,
    root_type TEXT NOT NULL,
    summary TEXT NOT NULL,
    cancelled_at TEXT
);
CREATE INDEX IF NOT EXISTS flow_summaries_order ON flow_summaries (sort_key);
CREATE INDEX IF NOT EXISTS flow_summaries_status ON flow_summaries (status, sort_key);
CREATE TABLE IF NOT EXISTS flow_events (
    correlation_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    parent TEXT NOT NULL,
    documented INTEGER NOT NULL,
    root INTEGER NOT NULL,
    PRIMARY KEY (correlation_id, event_id)
);
CREATE INDEX IF NOT EXISTS flow_events_roots ON flow_events (correlation_id, root);
CREATE TABLE IF NOT EXISTS flow_runs (
    correlation_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    module TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (correlation_id, event_id, module)
);
CREATE TABLE IF NOT EXISTS flow_counts (
    correlation_id TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (correlation_id, status)
);
CREATE TABLE IF NOT EXISTS flow_modules (
    correlation_id TEXT NOT NULL,
    module TEXT NOT NULL,
    PRIMARY KEY (correlation_id, module)
);
CREATE INDEX IF NOT EXISTS flow_modules_module ON flow_modules (module, correlation_id);
CREATE TABLE IF NOT EXISTS flow_index_state (version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS modules_live_subscribes_to
    ON modules (json_extract(body, '$.spec.subscribes_to')) WHERE deleted = 0;
"""

INDEX_VERSION = 1
"""`flow_index_state.version` once every flow written before the index existed is in it."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Row:
    started_at: str
    cancelled_at: str | None
    summary: str
    """The summary stored last ('' for a new flow)."""


def _ensure_flow(c: sqlite3.Connection, corr: str, *, at: datetime | None = None) -> _Row:
    """The flow's row, created if new (started `at`, or now)."""
    found = c.execute(
        "SELECT started_at, cancelled_at, summary FROM flow_summaries WHERE correlation_id = ?",
        (corr,),
    ).fetchone()
    if found is not None:
        return _Row(*found)
    now = at or _now()
    c.execute(
        "INSERT INTO flow_summaries (correlation_id, sort_key, started_at, status, root_type,"
        " summary) VALUES (?, ?, ?, ?, '', '')",
        (corr, sort_key(now, corr), stamp(now), FlowStatus.RUNNING.value),
    )
    return _Row(stamp(now), None, "")


def _count(c: sqlite3.Connection, corr: str, status: str, delta: int) -> None:
    c.execute(
        "INSERT INTO flow_counts (correlation_id, status, n) VALUES (?, ?, ?)"
        " ON CONFLICT(correlation_id, status) DO UPDATE SET n = n + excluded.n",
        (corr, status, delta),
    )


def _add_run(
    c: sqlite3.Connection, corr: str, event_id: str, module: str, attempt: int, status: RunStatus
) -> None:
    c.execute(
        "INSERT INTO flow_runs (correlation_id, event_id, module, attempt, status)"
        " VALUES (?, ?, ?, ?, ?)",
        (corr, event_id, module, attempt, status.value),
    )
    _count(c, corr, status.value, 1)
    c.execute(
        "INSERT OR IGNORE INTO flow_modules (correlation_id, module) VALUES (?, ?)", (corr, module)
    )


def subscribers(c: sqlite3.Connection, event_type: str) -> list[str]:
    """The live modules subscribed to `event_type` (by name)."""
    rows = c.execute(
        "SELECT json_extract(body, '$.spec.name') FROM modules WHERE deleted = 0"
        " AND json_extract(body, '$.spec.subscribes_to') = ?",
        (event_type,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def record_event(c: sqlite3.Connection, doc: EventMeta) -> None:
    """Note an eventMeta document: its event, and a PENDING run for each module subscribed to
    its type now (a rewrite of a documented event changes neither)."""
    corr = doc.context.correlation_id
    flow = _ensure_flow(c, corr)
    row = c.execute(
        "SELECT documented FROM flow_events WHERE correlation_id = ? AND event_id = ?",
        (corr, doc.id),
    ).fetchone()
    parent = doc.context.parent_event_id
    root = int(parent in (ROOT_PUBLISHER, ""))
    c.execute(
        "INSERT INTO flow_events (correlation_id, event_id, type, parent, documented, root)"
        " VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(correlation_id, event_id) DO UPDATE SET"
        " type = excluded.type, parent = excluded.parent, documented = 1, root = excluded.root",
        (corr, doc.id, doc.type, parent, root),
    )
    if row is None or not row[0]:
        for module in subscribers(c, doc.type):
            known = c.execute(
                "SELECT 1 FROM flow_runs WHERE correlation_id = ? AND event_id = ? AND module = ?",
                (corr, doc.id, module),
            ).fetchone()
            if known is None:
                _add_run(c, corr, doc.id, module, 0, RunStatus.PENDING)
    refresh(c, corr, flow, changed=True)


def record_attempt(c: sqlite3.Connection, attempt: JobAttempt) -> None:
    """Note a job attempt: its run follows the attempt with the highest number."""
    corr = attempt.correlation_id
    flow = _ensure_flow(c, corr)
    status = RunStatus.of([attempt])
    row = c.execute(
        "SELECT attempt, status FROM flow_runs WHERE correlation_id = ? AND event_id = ?"
        " AND module = ?",
        (corr, attempt.event_id, attempt.module),
    ).fetchone()
    if row is None:
        c.execute(
            "INSERT OR IGNORE INTO flow_events (correlation_id, event_id, type, parent,"
            " documented, root) VALUES (?, ?, ?, ?, 0, 0)",
            (corr, attempt.event_id, attempt.event_type, attempt.parent_event_id),
        )
        _add_run(c, corr, attempt.event_id, attempt.module, attempt.attempt, status)
    elif attempt.attempt >= row[0]:
        c.execute(
            "UPDATE flow_runs SET attempt = ?, status = ? WHERE correlation_id = ?"
            " AND event_id = ? AND module = ?",
            (attempt.attempt, status.value, corr, attempt.event_id, attempt.module),
        )
        if row[1] != status.value:
            _count(c, corr, row[1], -1)
            _count(c, corr, status.value, 1)
    refresh(c, corr, flow, changed=row is None)


def cancel(c: sqlite3.Connection, corr: str) -> bool:
    """Mark the flow cancelled (the first time is kept); False if there is no such flow."""
    found = c.execute(
        "SELECT started_at, cancelled_at, summary FROM flow_summaries WHERE correlation_id = ?",
        (corr,),
    ).fetchone()
    if found is None:
        return False
    flow = _Row(found[0], found[1] or stamp(_now()), found[2])
    c.execute(
        "UPDATE flow_summaries SET cancelled_at = ? WHERE correlation_id = ?",
        (flow.cancelled_at, corr),
    )
    refresh(c, corr, flow, changed=False)
    return True


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)  # `stamp`'s form: UTC, ending in Z


def refresh(c: sqlite3.Connection, corr: str, flow: _Row, *, changed: bool) -> None:
    """Derive the flow's summary from its tables and store it with its status.

    `changed`: an event or a run was added, so the root and the modules are read again (else
    they are the last summary's).
    """
    started_at, cancelled_at = flow.started_at, flow.cancelled_at
    counts = {
        RunStatus(status): n
        for status, n in c.execute(
            "SELECT status, n FROM flow_counts WHERE correlation_id = ? AND n > 0", (corr,)
        )
    }
    if cancelled_at is not None:
        moved = sum(n for s, n in counts.items() if not s.settled)
        counts = {s: n for s, n in counts.items() if s.settled}
        if moved:
            counts[RunStatus.CANCELLED] = counts.get(RunStatus.CANCELLED, 0) + moved
    if changed or not flow.summary:
        first = c.execute(
            "SELECT event_id, type FROM flow_events WHERE correlation_id = ? AND root = 1"
            " AND documented = 1 ORDER BY rowid LIMIT 1",
            (corr,),
        ).fetchone()
        root_id, root_type = first if first is not None else ("", "")
        modules = [
            r[0]
            for r in c.execute(
                "SELECT module FROM flow_modules WHERE correlation_id = ? ORDER BY module", (corr,)
            )
        ]
    else:
        last = json.loads(flow.summary)
        root_id, root_type, modules = (
            last["root_event_id"],
            last["root_event_type"],
            last["modules"],
        )
    statuses = list(counts)  # the statuses some run is in
    if not all(s.settled for s in statuses):
        status = FlowStatus.RUNNING  # gaps and roots matter only once every run has settled
    else:
        unhandled = c.execute(
            "SELECT 1 FROM flow_events e WHERE e.correlation_id = ? AND e.root = 1"
            " AND e.documented = 1 AND NOT EXISTS (SELECT 1 FROM flow_runs r"
            " WHERE r.correlation_id = e.correlation_id AND r.event_id = e.event_id) LIMIT 1",
            (corr,),
        ).fetchone()
        gap = (
            not root_id
            or c.execute(
                "SELECT 1 FROM flow_events e WHERE e.correlation_id = ? AND (e.documented = 0"
                " OR (e.root = 0 AND NOT EXISTS (SELECT 1 FROM flow_events p"
                " WHERE p.correlation_id = e.correlation_id AND p.event_id = e.parent))) LIMIT 1",
                (corr,),
            ).fetchone()
        )
        status = derive_status(
            run_statuses=statuses,
            roots_unhandled=unhandled is not None,
            has_gap=bool(gap),
            cancelled=cancelled_at is not None,
        )
    summary = FlowSummary(
        correlation_id=corr,
        root_event_id=root_id,
        root_event_type=root_type,
        status=status,
        modules=modules,
        runs=counts,
        started_at=_time(started_at),
        updated_at=_now(),
        cancelled_at=_time(cancelled_at) if cancelled_at is not None else None,
    )
    c.execute(
        "UPDATE flow_summaries SET status = ?, root_type = ?, summary = ? WHERE correlation_id = ?",
        (status.value, root_type, summary.model_dump_json(), corr),
    )


def backfill(c: sqlite3.Connection) -> int:
    """Index every flow a store written before the index existed holds (once per database);
    return how many flows were indexed.

    Each is replayed from its eventMeta documents and attempts, oldest first, started at its
    first attempt's start (or now); subscribers are the live modules of now.
    """
    done = c.execute(
        "SELECT 1 FROM flow_index_state WHERE version >= ?", (INDEX_VERSION,)
    ).fetchone()
    if done is not None:
        return 0
    missing = [
        r[0]
        for r in c.execute(
            "SELECT correlation_id FROM documents UNION SELECT correlation_id FROM attempts"
            " EXCEPT SELECT correlation_id FROM flow_summaries"
        ).fetchall()
    ]
    for corr in missing:
        attempts = [
            JobAttempt.model_validate_json(r[0])
            for r in c.execute(
                "SELECT body FROM attempts WHERE correlation_id = ? ORDER BY rowid", (corr,)
            ).fetchall()
        ]
        starts = [a.started_at for a in attempts if a.started_at is not None]
        _ensure_flow(c, corr, at=min(starts) if starts else None)
        for (body,) in c.execute(
            "SELECT body FROM documents WHERE correlation_id = ? AND doc_type = 'eventMeta'"
            " ORDER BY rowid",
            (corr,),
        ).fetchall():
            record_event(c, EventMeta.model_validate_json(body))
        for attempt in attempts:
            record_attempt(c, attempt)
    c.execute("INSERT INTO flow_index_state (version) VALUES (?)", (INDEX_VERSION,))
    return len(missing)
