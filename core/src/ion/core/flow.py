"""The flow of one correlation id as a tree: each event, the modules it triggered, their children.

Built from the metadata store alone (the flow's documents and job attempts) plus which modules
subscribe to which event type, so any process that can read the store can build it, and a run
that has not started yet shows as PENDING. The dispatcher's `pipeline run` and the management
server build it here; the server sends it as `ion.v1.Flow` and the CLI turns that back into this
model, so both print it with `ion.core.flowtree` and both write the same JSON
(`Flow.model_dump(mode="json")`).

When a flow is settled and when it succeeded:

- A run is settled when it is SUCCEEDED or DEAD_LETTERED (`RunStatus.settled`).
- The flow is *settled* when it has at least one event and every run in it is settled: nothing
  more will happen unless someone acts (a dead-letter replay, a new event).
- The flow *succeeded* when it is settled, every run SUCCEEDED (or was FILTERED: its module's
  `when` rule chose not to run it), every root event was handled by
  at least one module, and the tree has no gap (every event has its eventMeta document and
  every root event is a real root, raised from outside, not a child whose parent is missing).
- Its `status` (`ion.core.flowindex.FlowStatus`, the one a flow listing shows) is RUNNING until
  it settles, then CANCELLED (the flow was cancelled, or a run of it), NO_SUBSCRIBER (a root
  event nobody handled), FAILED (a dead letter or a gap) or SUCCEEDED. A cancelled flow
  (`ion flow cancel`, recorded in the store) shows every run that had not settled as CANCELLED:
  the dispatchers run nothing more of it.

An event no module subscribes to (and none tried) triggered nothing: `triggered` is empty and
the tree says so ("no subscribers"). For a child event that is the normal end of a branch, an
output nobody consumes, and it does not change `succeeded`. For a root event it means no work was
done at all: the flow settles at once (nothing will happen) but does not succeed, so
`pipeline run` exits non-zero instead of reporting success for work nobody did.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from ion.core import errors
from ion.core.documents import FlowDocument
from ion.core.events import ROOT_PUBLISHER, EventMeta, Insight, KeyValuePair
from ion.core.flowindex import FlowStatus, derive_status
from ion.core.ports.meta import MetadataStore
from ion.core.records import AttemptState, JobAttempt, RouteChoice, RunStatus

__all__ = [
    "Flow",
    "FlowAttempt",
    "FlowEvent",
    "FlowModuleRun",
    "FlowStatus",
    "RunStatus",
    "build_flow",
    "load_flow",
    "settle",
]


class FlowAttempt(BaseModel):
    """One attempt of a run, as a flow shows it (`ion.v1.Attempt`)."""

    id: str
    attempt: int
    state: AttemptState
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str = ""
    logs_ref: str = ""
    dispatcher: str = ""
    route: RouteChoice | None = None
    """Where it ran by the module's routes (None when the module has none)."""

    @classmethod
    def of(cls, record: JobAttempt) -> FlowAttempt:
        """Return the flow's view of a job attempt record."""
        return cls(
            id=record.id,
            attempt=record.attempt,
            state=record.state,
            started_at=record.started_at,
            finished_at=record.finished_at,
            exit_code=record.exit_code,
            reason=record.reason,
            logs_ref=record.logs_ref,
            dispatcher=record.dispatcher,
            route=record.route,
        )


class FlowModuleRun(BaseModel):
    """One module's handling of one event: its attempts and what it produced."""

    module: str
    status: RunStatus
    attempts: list[FlowAttempt] = Field(default_factory=list)
    """Oldest first."""
    duration_seconds: float | None = None
    """From the first attempt's start to the last one's end; None until an attempt finished."""
    outputs: list[str] = Field(default_factory=list)
    """Blob keys of the files it committed (`<correlation>/<event>/<module>/<path>`)."""
    insights: list[KeyValuePair] = Field(default_factory=list)
    logs: list[str] = Field(default_factory=list)
    """Where each attempt's logs are (from the modulelogs documents)."""
    reason: str = ""
    """Why the last attempt failed."""
    children: list[FlowEvent] = Field(default_factory=list)
    """The events it raised."""


class FlowEvent(BaseModel):
    """One event of the flow and the runs it triggered."""

    event_id: str
    event_type: str
    published_by: str = ""
    """`context.name`: the module that raised it, or "frontapi" for a root event."""
    parent_event_id: str = ""
    files: list[str] = Field(default_factory=list)
    data: list[KeyValuePair] = Field(default_factory=list)
    triggered: list[FlowModuleRun] = Field(default_factory=list)
    """Empty when no module subscribes to the event's type (and none tried it)."""
    missing_document: bool = False
    """The event has no eventMeta document; it is known only from its job attempts."""

    @property
    def handled(self) -> bool:
        """At least one module subscribes to (or ran on) the event."""
        return bool(self.triggered)

    @property
    def raised_from_outside(self) -> bool:
        """A root event proper: raised by the front API (or a client), not by a module."""
        return self.parent_event_id in (ROOT_PUBLISHER, "")


class Flow(BaseModel):
    """The whole tree of one correlation id."""

    correlation_id: str
    roots: list[FlowEvent] = Field(default_factory=list)
    """Root events, then any event whose parent is not in the tree (shown as its own branch)."""
    settled: bool = False
    """There is an event, and no run is pending, running or waiting to retry."""
    succeeded: bool = False
    """Settled, every run succeeded, every root was handled and no document is missing."""
    status: FlowStatus = FlowStatus.RUNNING
    """The flow's status, as `ion flow list` shows it (see the module docstring)."""

    @property
    def root(self) -> FlowEvent | None:
        """The first root event (flows raised by Ion have exactly one)."""
        return self.roots[0] if self.roots else None

    def events(self) -> Iterator[FlowEvent]:
        """Every event in the tree, depth first."""
        stack = list(reversed(self.roots))
        while stack:
            event = stack.pop()
            yield event
            for run in reversed(event.triggered):
                stack.extend(reversed(run.children))

    def runs(self) -> list[FlowModuleRun]:
        """Every module run in the tree, depth first."""
        return [run for event in self.events() for run in event.triggered]


FlowModuleRun.model_rebuild()


def build_flow(
    correlation_id: str,
    documents: Iterable[FlowDocument],
    attempts: Iterable[JobAttempt],
    subscribers: Mapping[str, Sequence[str]],
    *,
    cancelled: bool = False,
) -> Flow:
    """Assemble the tree from a flow's documents and job attempts.

    `cancelled`: the flow was cancelled; every run not settled shows as CANCELLED.

    `subscribers` maps an event type to the modules subscribed to it, so runs that have not
    started yet appear as PENDING. A run with documents (insight, modulelogs, child events) but
    no job attempt, as in a flow the 2018 system ran, is SUCCEEDED if a document shows success
    and DEAD_LETTERED otherwise. A child event is placed under the run that raised it (its
    `parentEventId` and `context.name`); an event whose parent is not in the tree becomes a root
    of its own branch, and an event that has attempts but no eventMeta document appears as a
    root marked `missing_document`, so no run of the flow is ever left out of `settled`.
    """
    metas: dict[str, EventMeta] = {}
    insights: dict[tuple[str, str], list[KeyValuePair]] = defaultdict(list)
    logs: dict[tuple[str, str], list[str]] = defaultdict(list)
    # Runs the documents show (a 2018 flow has no job attempts), and those they show succeeded:
    # an insight or a child event is written only by a successful commit.
    documented: dict[str, list[str]] = defaultdict(list)
    documented_success: set[tuple[str, str]] = set()
    for doc in documents:
        key = (doc.context.event_id, doc.context.name)
        if isinstance(doc, EventMeta):
            metas[doc.id] = doc
            key = (doc.context.parent_event_id, doc.context.name)
            if key[0] in (ROOT_PUBLISHER, ""):
                continue
            documented_success.add(key)
        elif isinstance(doc, Insight):
            insights[key].extend(doc.data)
            documented_success.add(key)
        else:
            logs[key].append(doc.logs)
            if doc.succeeded:
                documented_success.add(key)
        if key[1] not in documented[key[0]]:
            documented[key[0]].append(key[1])

    tried: dict[tuple[str, str], list[JobAttempt]] = defaultdict(list)
    tried_modules: dict[str, list[str]] = defaultdict(list)
    seen_events: dict[str, JobAttempt] = {}  # first attempt of each event, in order
    for attempt in attempts:
        if (attempt.event_id, attempt.module) not in tried:
            tried_modules[attempt.event_id].append(attempt.module)
        tried[(attempt.event_id, attempt.module)].append(attempt)
        seen_events.setdefault(attempt.event_id, attempt)

    events: dict[str, FlowEvent] = {
        meta.id: FlowEvent(
            event_id=meta.id,
            event_type=meta.type,
            published_by=meta.context.name,
            parent_event_id=meta.context.parent_event_id,
            files=list(meta.files),
            data=list(meta.data),
        )
        for meta in metas.values()
    }
    for event_id, first in seen_events.items():
        if event_id not in events:
            events[event_id] = FlowEvent(
                event_id=event_id,
                event_type=first.event_type,
                parent_event_id=first.parent_event_id,
                missing_document=True,
            )

    children_of: dict[tuple[str, str], list[str]] = defaultdict(list)
    for meta in metas.values():
        children_of[(meta.context.parent_event_id, meta.context.name)].append(meta.id)

    placed: set[str] = set()

    def fill(event: FlowEvent) -> None:
        # Depth first; `placed` guards against an event reached twice (a cycle of bad parents).
        placed.add(event.event_id)
        modules = list(subscribers.get(event.event_type, []))
        modules += [m for m in tried_modules.get(event.event_id, []) if m not in modules]
        modules += [m for m in documented.get(event.event_id, []) if m not in modules]
        for module in modules:
            key = (event.event_id, module)
            records = sorted(tried.get(key, []), key=lambda a: a.attempt)
            status, reason = RunStatus.of(records), records[-1].reason if records else ""
            if cancelled and not status.settled:
                status, reason = RunStatus.CANCELLED, "the flow was cancelled"
            if not records and module in documented.get(event.event_id, []):
                # No job attempt, yet documents of the run: it ran outside Ion's dispatchers
                # (the 2018 system), and nothing here will run it again.
                if key in documented_success:
                    status = RunStatus.SUCCEEDED
                else:
                    status = RunStatus.DEAD_LETTERED
                    reason = "failed (its modulelogs say so); no job attempt is recorded"
            run = FlowModuleRun(
                module=module,
                status=status,
                attempts=[FlowAttempt.of(a) for a in records],
                duration_seconds=_duration(records),
                outputs=[o for a in records for o in a.outputs],
                insights=insights.get(key, []),
                logs=logs.get(key, []),
                reason=reason,
            )
            for child_id in children_of.get(key, []):
                if child_id not in placed:
                    child = events[child_id]
                    fill(child)
                    run.children.append(child)
            event.triggered.append(run)

    roots: list[FlowEvent] = []
    for event in events.values():
        if event.raised_from_outside and not event.missing_document:
            roots.append(event)
            fill(event)
    for event in events.values():  # the rest: branches whose parent is not in the tree
        while event.event_id not in placed:
            top = _topmost_unplaced(event, events, placed)
            roots.append(top)
            fill(top)

    return settle(Flow(correlation_id=correlation_id, roots=roots), cancelled=cancelled)


def settle(flow: Flow, *, cancelled: bool = False) -> Flow:
    """Set the flow's `settled`, `succeeded` and `status` from its tree; return it."""
    runs = flow.runs()
    statuses = [r.status for r in runs]
    has_gap = (
        not flow.roots
        or any(e.missing_document for e in flow.events())
        or not all(root.raised_from_outside for root in flow.roots)
    )
    flow.settled = bool(flow.roots) and all(s.settled for s in statuses)
    flow.succeeded = (
        flow.settled
        and all(s in (RunStatus.SUCCEEDED, RunStatus.FILTERED) for s in statuses)
        and all(root.handled for root in flow.roots)
        and not has_gap
    )
    flow.status = derive_status(
        run_statuses=statuses,
        roots_unhandled=any(r.raised_from_outside and not r.handled for r in flow.roots),
        has_gap=has_gap,
        cancelled=cancelled,
    )
    if not flow.roots:
        flow.status = FlowStatus.RUNNING  # nothing recorded yet: not settled either
    return flow


def _topmost_unplaced(
    event: FlowEvent, events: Mapping[str, FlowEvent], placed: set[str]
) -> FlowEvent:
    """The oldest ancestor of `event` not yet in the tree, so a branch is built from its top."""
    seen = {event.event_id}
    while True:
        parent = events.get(event.parent_event_id)
        if parent is None or parent.event_id in placed or parent.event_id in seen:
            return event
        seen.add(parent.event_id)
        event = parent


def _duration(records: Sequence[JobAttempt]) -> float | None:
    started = [a.started_at for a in records if a.started_at]
    finished = [a.finished_at for a in records if a.finished_at]
    if not started or not finished:
        return None
    return (max(finished) - min(started)).total_seconds()


async def load_flow(
    meta: MetadataStore, correlation_id: str, subscribers: Mapping[str, Sequence[str]]
) -> Flow:
    """Read a flow's documents and attempts from the store and build its tree.

    Both must be of one moment: documents read before the attempts could show a run succeeded by
    its attempt record but not yet the events its commit raised (the flow would look settled too
    early). A store that can read both at once (`flow_records`, the embedded one) does; with
    another, the attempts are read before and after the documents, again until they agree, so
    every document of a run belongs to an attempt state the tree shows. A flow the store
    records as cancelled shows its unsettled runs as CANCELLED.
    """
    try:
        cancelled = (await meta.get_flow_summary(correlation_id)).cancelled
    except errors.NotFoundError:
        cancelled = False  # no summary (yet, or a flow written before there were any)
    at_once = getattr(meta, "flow_records", None)
    if at_once is not None:
        documents, attempts = await at_once(correlation_id)
        return build_flow(correlation_id, documents, attempts, subscribers, cancelled=cancelled)
    attempts = await meta.list_attempts(correlation_id=correlation_id)
    for _ in range(_CONSISTENT_READS):
        documents = await meta.list_documents(correlation_id)
        again = await meta.list_attempts(correlation_id=correlation_id)
        if again == attempts:
            break
        attempts = again
    return build_flow(correlation_id, documents, attempts, subscribers, cancelled=cancelled)


_CONSISTENT_READS = 20
"""Most rereads of a flow whose attempts keep changing (one of many runs ends every time)."""
