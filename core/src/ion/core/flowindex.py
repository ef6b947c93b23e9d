"""Flows as listable objects: the status of a whole flow, its one-row summary, queries and pages.

A metadata store keeps one *ledger* per flow (correlation id) beside the flow's documents and
attempts, and updates it in the same write as each eventMeta document and job attempt (Cosmos
DB: `FlowLedger`, one item per flow, replaced under if-match on its etag and retried on
conflict; SQLite: the same rules kept in tables, in the write's transaction). The ledger holds what the status needs and nothing else: each event (type,
parent, whether its eventMeta exists, and the modules subscribed to its type *when it was
written*, as the bus delivers it to exactly those subscriptions), each run's latest attempt
state, and whether the flow was cancelled. The status, the counts of runs and the modules are
derived from it on every write and stored in indexed columns, so `list_flows` filters by status,
module, root event type and start time without reading any flow's documents.

The same rules decide `Flow.status` for a flow tree (`ion.core.flow`), so a list and a tree agree,
except that a tree takes subscribers from the caller (the modules running now).
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ion.core import errors
from ion.core.events import ROOT_PUBLISHER, EventMeta
from ion.core.records import JobAttempt, RunStatus

__all__ = [
    "FlowLedger",
    "FlowPage",
    "FlowQuery",
    "FlowStatus",
    "FlowSummary",
    "decode_cursor",
    "encode_cursor",
    "sort_key",
    "stamp",
]


class FlowStatus(StrEnum):
    """Where a whole flow is: one of five, shared by `ion flow list`, trees and the console."""

    RUNNING = "RUNNING"
    """Some run is pending, running or waiting to retry."""
    SUCCEEDED = "SUCCEEDED"
    """Settled; every run succeeded (or was filtered out) and the root event was handled."""
    FAILED = "FAILED"
    """Settled; a run was dead-lettered, or the flow has a gap (a missing document or parent)."""
    CANCELLED = "CANCELLED"
    """The flow was cancelled (`ion flow cancel`), or a run of it was (module deleted --force)."""
    NO_SUBSCRIBER = "NO_SUBSCRIBER"
    """No module subscribed to the root event when it was raised: nothing ran, nothing will."""


def derive_status(
    *,
    run_statuses: list[RunStatus],
    roots_unhandled: bool,
    has_gap: bool,
    cancelled: bool,
) -> FlowStatus:
    """The status of a flow from its runs (after a cancellation is applied to them).

    A flow cancelled after it had settled keeps the status it settled with.

    `roots_unhandled`: a root event raised from outside triggered no run; `has_gap`: a document
    or a parent is missing, or there is no root at all.
    """
    if not all(s.settled for s in run_statuses):
        return FlowStatus.RUNNING
    if cancelled and RunStatus.CANCELLED in run_statuses:
        return FlowStatus.CANCELLED  # a cancel that found nothing left to stop changes nothing
    if roots_unhandled:
        return FlowStatus.NO_SUBSCRIBER
    if has_gap or RunStatus.DEAD_LETTERED in run_statuses:
        return FlowStatus.FAILED
    if RunStatus.CANCELLED in run_statuses:
        return FlowStatus.CANCELLED
    return FlowStatus.SUCCEEDED


class FlowSummary(BaseModel):
    """One flow in a listing: what `ion flow list` prints a row of."""

    model_config = ConfigDict(frozen=True)

    correlation_id: str
    root_event_id: str = ""
    """The first event raised from outside ('' while only its attempts are known)."""
    root_event_type: str = ""
    status: FlowStatus
    modules: list[str] = Field(default_factory=list)
    """Every module that ran or is expected to run in the flow, sorted."""
    runs: dict[RunStatus, int] = Field(default_factory=dict)
    """How many runs (one module on one event) are in each status; absent: none."""
    started_at: datetime
    """When the store first saw the flow (its first document or attempt)."""
    updated_at: datetime
    """When the store last recorded anything of it."""
    cancelled_at: datetime | None = None
    """When `ion flow cancel` cancelled it (None: never)."""

    @property
    def cancelled(self) -> bool:
        """The flow was cancelled: dispatchers run nothing more of it."""
        return self.cancelled_at is not None


class FlowQuery(BaseModel):
    """What `MetadataStore.list_flows` selects: every filter given must match; newest first."""

    model_config = ConfigDict(frozen=True)

    status: list[FlowStatus] = Field(default_factory=list)
    """Any of these statuses (empty: any status)."""
    module: str = ""
    """Flows in which this module (by name) ran or is expected to run."""
    root_event_type: str = ""
    started_after: datetime | None = None
    """Flows first seen at or after this time."""
    started_before: datetime | None = None
    """Flows first seen before this time."""
    id_prefix: str = ""
    """Flows whose correlation id starts with this (short ids)."""
    limit: int = Field(default=50, ge=1, le=1000)
    """Most flows in one page."""
    cursor: str = ""
    """`FlowPage.next_cursor` of the previous page ('' for the first page)."""


class FlowPage(BaseModel):
    """One page of flows, newest first, and the cursor of the next page."""

    model_config = ConfigDict(frozen=True)

    items: list[FlowSummary] = Field(default_factory=list)
    next_cursor: str = ""
    """Pass as `FlowQuery.cursor` for the next page; '' when this is the last one."""


_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
_CURSOR_PREFIX = "v1|"


def stamp(moment: datetime) -> str:
    """A time as the stores keep it: UTC, fixed width, so text order is time order."""
    return moment.astimezone(UTC).strftime(_STAMP)


def sort_key(started_at: datetime, correlation_id: str) -> str:
    """The key flows are listed by (descending): start time, then correlation id."""
    return f"{stamp(started_at)}|{correlation_id}"


def encode_cursor(key: str) -> str:
    """The opaque cursor that continues a listing after the flow with sort key `key`."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The sort key a cursor continues after.

    Raises:
        errors.ValidationError: the cursor is not one a listing returned (field `cursor`).
    """
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(_CURSOR_PREFIX) or "|" not in text[len(_CURSOR_PREFIX) :]:
        raise errors.ValidationError(
            f"cursor {cursor[:40]!r} is not one a flow listing returned; start again without it",
            field="cursor",
            rule="InvalidCursor",
        )
    return text[len(_CURSOR_PREFIX) :]


class _Event(BaseModel):
    type: str = ""
    parent: str = ""
    documented: bool = False
    """Its eventMeta document is stored."""
    expected: list[str] = Field(default_factory=list)
    """Modules subscribed to its type when its eventMeta was written."""

    @property
    def from_outside(self) -> bool:
        return self.parent in (ROOT_PUBLISHER, "")


class _Run(BaseModel):
    attempt: int
    status: RunStatus


def _run_key(event_id: str, module: str) -> str:
    return f"{event_id}|{module}"


class FlowLedger(BaseModel):
    """What a store keeps per flow to derive its summary; see the module docstring.

    Size grows with the flow's events and runs (about 100 bytes each), so a Cosmos DB item
    (2 MB at most) holds flows of up to roughly 15 000 runs.
    """

    correlation_id: str
    started_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None = None
    events: dict[str, _Event] = Field(default_factory=dict)
    runs: dict[str, _Run] = Field(default_factory=dict)

    @classmethod
    def new(cls, correlation_id: str, now: datetime) -> FlowLedger:
        """An empty ledger first seen `now`."""
        return cls(correlation_id=correlation_id, started_at=now, updated_at=now)

    def record_event(self, doc: EventMeta, subscribers: list[str], now: datetime) -> None:
        """Note an eventMeta document; `subscribers`: modules subscribed to its type now.

        A rewrite of the same event keeps the subscribers of its first write.
        """
        known = self.events.get(doc.id)
        expected = known.expected if known is not None and known.documented else subscribers
        self.events[doc.id] = _Event(
            type=doc.type,
            parent=doc.context.parent_event_id,
            documented=True,
            expected=sorted(set(expected)),
        )
        self.updated_at = max(self.updated_at, now)

    def record_attempt(self, attempt: JobAttempt, now: datetime) -> None:
        """Note a job attempt: its run's status follows the attempt with the highest number."""
        if attempt.event_id not in self.events:
            self.events[attempt.event_id] = _Event(
                type=attempt.event_type, parent=attempt.parent_event_id
            )
        key = _run_key(attempt.event_id, attempt.module)
        known = self.runs.get(key)
        if known is None or attempt.attempt >= known.attempt:
            self.runs[key] = _Run(attempt=attempt.attempt, status=RunStatus.of([attempt]))
        self.updated_at = max(self.updated_at, now)

    def cancel(self, now: datetime) -> None:
        """Mark the flow cancelled (the first cancellation's time is kept)."""
        if self.cancelled_at is None:
            self.cancelled_at = now
        self.updated_at = max(self.updated_at, now)

    def run_statuses(self) -> dict[tuple[str, str], RunStatus]:
        """Every run, expected or attempted, with its status (a cancellation applied)."""
        out: dict[tuple[str, str], RunStatus] = {}
        for event_id, event in self.events.items():
            for module in event.expected:
                out[(event_id, module)] = RunStatus.PENDING
        for key, run in self.runs.items():
            event_id, _, module = key.partition("|")
            out[(event_id, module)] = run.status
        if self.cancelled_at is not None:
            out = {k: (s if s.settled else RunStatus.CANCELLED) for k, s in out.items()}
        return out

    def summary(self) -> FlowSummary:
        """The flow's summary as of the last recorded write."""
        runs = self.run_statuses()
        handled = {event_id for event_id, _ in runs}
        roots = [(i, e) for i, e in self.events.items() if e.documented and e.from_outside]
        has_gap = not roots or any(
            not e.documented or (not e.from_outside and e.parent not in self.events)
            for e in self.events.values()
        )
        status = derive_status(
            run_statuses=list(runs.values()),
            roots_unhandled=any(i not in handled for i, _ in roots),
            has_gap=has_gap,
            cancelled=self.cancelled_at is not None,
        )
        root_id, root = roots[0] if roots else ("", None)
        return FlowSummary(
            correlation_id=self.correlation_id,
            root_event_id=root_id,
            root_event_type=root.type if root is not None else "",
            status=status,
            modules=sorted({module for _, module in runs}),
            runs=dict(Counter(runs.values())),
            started_at=self.started_at,
            updated_at=self.updated_at,
            cancelled_at=self.cancelled_at,
        )
