"""The flow of one correlation id as a tree: each event, the modules it triggered, their children.

Built from the metadata store alone (eventMeta documents, insights, module logs and job
attempts) plus which modules subscribe to which event type, so any process that can read the
store can draw it, and a run that has not started yet shows as PENDING.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from ion.core.events import ROOT_PUBLISHER
from ion.core.ports.meta import MetadataStore
from ion.core.records import AttemptState, JobAttempt

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
RUNNING = "RUNNING"
PENDING = "PENDING"
RETRYING = "RETRYING"
DEAD_LETTERED = "DEAD_LETTERED"


class FlowModuleRun(BaseModel):
    """One module's handling of one event: its attempts and what it produced."""

    module: str
    status: str
    attempts: list[JobAttempt] = Field(default_factory=list)
    duration_seconds: float | None = None
    outputs: list[str] = Field(default_factory=list)
    insights: dict[str, str] = Field(default_factory=dict)
    logs: list[str] = Field(default_factory=list)
    reason: str = ""
    children: list[FlowEvent] = Field(default_factory=list)


class FlowEvent(BaseModel):
    """One event of the flow."""

    event_id: str
    event_type: str
    published_by: str
    files: list[str] = Field(default_factory=list)
    data: dict[str, str] = Field(default_factory=dict)
    triggered: list[FlowModuleRun] = Field(default_factory=list)


class Flow(BaseModel):
    """The whole tree of one correlation id."""

    correlation_id: str
    roots: list[FlowEvent] = Field(default_factory=list)
    settled: bool = False
    """No run is pending, running or waiting to retry."""
    succeeded: bool = False
    """Settled, and every run succeeded."""

    @property
    def root(self) -> FlowEvent | None:
        """The first root event (flows raised by Ion have exactly one)."""
        return self.roots[0] if self.roots else None

    def runs(self) -> list[FlowModuleRun]:
        """Every module run in the tree, depth first."""
        out: list[FlowModuleRun] = []

        def walk(event: FlowEvent) -> None:
            for run in event.triggered:
                out.append(run)
                for child in run.children:
                    walk(child)

        for root in self.roots:
            walk(root)
        return out


FlowModuleRun.model_rebuild()


def _run_status(attempts: Sequence[JobAttempt]) -> str:
    last = max(attempts, key=lambda a: a.attempt)
    return {
        AttemptState.SUCCEEDED: SUCCEEDED,
        AttemptState.DEAD_LETTERED: DEAD_LETTERED,
        AttemptState.FAILED: RETRYING,
        AttemptState.RUNNING: RUNNING,
        AttemptState.PENDING: RUNNING,
    }[last.state]


def build_flow(
    correlation_id: str,
    documents: Sequence[Mapping[str, Any]],
    attempts: Sequence[JobAttempt],
    subscribers: Mapping[str, Sequence[str]],
) -> Flow:
    """Assemble the tree from a flow's documents and attempts.

    `subscribers` maps an event type to the modules subscribed to it, so runs that have not
    started yet appear as PENDING.
    """
    events: dict[str, dict[str, Any]] = {}
    insights: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    log_links: dict[tuple[str, str], list[str]] = defaultdict(list)
    for doc in documents:
        ctx = doc.get("context", {})
        kind = ctx.get("documentType")
        if kind == "eventMeta":
            events[doc["id"]] = dict(doc)
        elif kind == "insight":
            for pair in doc.get("data", []):
                insights[(ctx.get("eventId", ""), ctx.get("name", ""))][pair["key"]] = pair["value"]
        elif kind == "modulelogs":
            log_links[(ctx.get("eventId", ""), ctx.get("name", ""))].append(doc.get("logs", ""))
    by_run: dict[tuple[str, str], list[JobAttempt]] = defaultdict(list)
    tried_modules: dict[str, list[str]] = defaultdict(list)
    for attempt in attempts:
        if (attempt.event_id, attempt.module) not in by_run:
            tried_modules[attempt.event_id].append(attempt.module)
        by_run[(attempt.event_id, attempt.module)].append(attempt)
    children_of: dict[tuple[str, str], list[str]] = defaultdict(list)
    for event_id, doc in events.items():
        ctx = doc["context"]
        children_of[(ctx.get("parentEventId", ""), ctx.get("name", ""))].append(event_id)

    def make_event(event_id: str) -> FlowEvent:
        doc = events[event_id]
        event_type = doc.get("type", "")
        modules = list(subscribers.get(event_type, []))
        modules += [m for m in tried_modules.get(event_id, []) if m not in modules]
        runs = []
        for module in modules:
            tried = sorted(by_run.get((event_id, module), []), key=lambda a: a.attempt)
            run = FlowModuleRun(
                module=module, status=_run_status(tried) if tried else PENDING, attempts=tried
            )
            if tried:
                started = [a.started_at for a in tried if a.started_at]
                finished = [a.finished_at for a in tried if a.finished_at]
                if started and finished:
                    run.duration_seconds = (max(finished) - min(started)).total_seconds()
                run.outputs = [o for a in tried for o in a.outputs]
                run.reason = tried[-1].reason
            run.insights = insights.get((event_id, module), {})
            run.logs = log_links.get((event_id, module), [])
            run.children = [make_event(c) for c in children_of.get((event_id, module), [])]
            runs.append(run)
        return FlowEvent(
            event_id=event_id,
            event_type=event_type,
            published_by=doc["context"].get("name", ""),
            files=list(doc.get("files", [])),
            data={p["key"]: p["value"] for p in doc.get("data", [])},
            triggered=runs,
        )

    roots = [eid for eid in events if _is_root(events, eid)]
    flow = Flow(correlation_id=correlation_id, roots=[make_event(r) for r in roots])
    runs = flow.runs()
    flow.settled = bool(flow.roots) and all(r.status in (SUCCEEDED, DEAD_LETTERED) for r in runs)
    flow.succeeded = flow.settled and all(r.status == SUCCEEDED for r in runs)
    return flow


def _is_root(events: Mapping[str, Mapping[str, Any]], event_id: str) -> bool:
    parent = events[event_id]["context"].get("parentEventId", "")
    # A child whose parent event has no document is shown as a root of its own branch.
    return parent in (ROOT_PUBLISHER, "") or parent not in events


async def load_flow(
    meta: MetadataStore, correlation_id: str, subscribers: Mapping[str, Sequence[str]]
) -> Flow:
    """Read a flow's documents and attempts from the store and build its tree."""
    documents = await meta.list_documents(correlation_id)
    attempts = await meta.list_attempts(correlation_id=correlation_id)
    return build_flow(correlation_id, documents, attempts, subscribers)
