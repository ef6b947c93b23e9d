"""Flows as objects on the management API: list them, get one by a short id, cancel one, and
read the logs of its job attempts.

`TraceService` is the 2018 service (GetFlow keeps its path and fields) plus
ListFlows, CancelFlow and GetLog. Every id a person saw printed is accepted: a correlation id or
a unique prefix of it (`resolve_flow`), an attempt id or a unique prefix of it
(`resolve_attempts`); an ambiguous prefix is refused with the candidates. Summaries come from
the metadata store (`MetadataStore.list_flows`), trees from `ion.core.flow`, so any process that
holds the store (the web console too) sees the same statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, Protocol, runtime_checkable

from ion.core import TERMINAL_STATES, FlowQuery, FlowStatus, FlowSummary, errors, identifiers
from ion.core.events import EventMeta
from ion.core.flow import Flow
from ion.core.ports import BlobStore, MetadataStore
from ion.core.records import JobAttempt
from ion.management import convert
from ion.management.dataplane import Platform
from ion.management.services import MAX_WAIT_SECONDS, _rpc
from ion.proto import trace_pb2, trace_pb2_grpc

__all__ = [
    "LiveLogs",
    "TraceService",
    "attempt_log",
    "resolve_attempts",
    "resolve_flow",
    "summary_message",
]

MAX_CANDIDATES = 5
"""Most candidates an ambiguous id's refusal lists."""
DEFAULT_PAGE = 50
MAX_PAGE = 1000


@runtime_checkable
class LiveLogs(Protocol):
    """A platform that can read the log of a job running now (the embedded control plane)."""

    async def job_log(self, job_id: str, executor: str | None = None) -> bytes:
        """Return what the job's log holds so far; raise NotFoundError if unknown."""
        ...


def _ambiguous(what: str, ref: str, candidates: Sequence[str], more: bool, field: str) -> NoReturn:
    shown = ", ".join(candidates[:MAX_CANDIDATES]) + (", ..." if more else "")
    raise errors.ValidationError(
        f"{what} {ref!r} is ambiguous: it starts {shown}; give more characters",
        field=field,
        rule="AmbiguousId",
    )


async def resolve_flow(meta: MetadataStore, ref: str, *, field: str = "correlation_id") -> str:
    """Return the correlation id `ref` names: itself, or the one flow whose id starts with it.

    Raises:
        errors.ValidationError: `ref` is empty, not an id, or starts several flows' ids.
        errors.NotFoundError: no flow has that id or an id starting with it.
    """
    ref = ref.strip()
    if not ref:
        raise errors.ValidationError(f"field {field!r} is required", field=field, rule="required")
    identifiers.check_id(ref, field=field)
    with contextlib.suppress(errors.NotFoundError):
        return (await meta.get_flow_summary(ref)).correlation_id
    page = await meta.list_flows(FlowQuery(id_prefix=ref, limit=MAX_CANDIDATES + 1))
    ids = [f.correlation_id for f in page.items]
    if len(ids) == 1:
        return ids[0]
    if ids:
        _ambiguous("flow id", ref, ids, len(ids) > MAX_CANDIDATES, field)
    if await meta.list_documents(ref):  # a flow recorded before flows had summaries
        return ref
    raise errors.NotFoundError(
        f"no flow with correlation id {ref!r} (or one starting with it); see `ion flow list`"
    )


async def resolve_event(meta: MetadataStore, ref: str, correlation_id: str = "") -> EventMeta:
    """Return the eventMeta `ref` names: its event id, or a unique prefix of one (the short id a
    flow tree prints), in `correlation_id`'s flow if given, else in any flow.

    Raises:
        errors.ValidationError: `ref` starts several events' ids.
        errors.NotFoundError: no event has that id or an id starting with it.
    """
    if correlation_id:
        with contextlib.suppress(errors.NotFoundError):
            return await meta.get_event_meta(correlation_id, ref)
        found = [  # the flow's own documents: no other flow's events crowd them out
            d
            for d in await meta.list_documents(correlation_id)
            if isinstance(d, EventMeta) and d.id.startswith(ref)
        ]
    else:
        found = await meta.find_event_metas(ref, limit=MAX_CANDIDATES + 1)
    exact = [m for m in found if m.id == ref]
    if exact or len(found) == 1:
        return (exact or found)[0]
    if found:
        ids = sorted(m.id for m in found)
        _ambiguous("event id", ref, ids, len(ids) > MAX_CANDIDATES, "event_id")
    where = f" in flow {correlation_id!r}" if correlation_id else ""
    raise errors.NotFoundError(f"no event {ref!r} (or one starting with it){where}")


async def _module_name(meta: MetadataStore, ref: str) -> str:
    """A module's name from its id, or `ref` itself (a name)."""
    try:
        return (await meta.get_module(ref)).spec.name
    except errors.NotFoundError:
        return ref


async def resolve_attempts(meta: MetadataStore, ref: str, *, module: str = "") -> list[JobAttempt]:
    """Return the attempts `ref` names, oldest first: a flow's (by its id or a prefix; only
    `module`'s if given), one attempt (by its id or a prefix), or with no `ref` the latest
    attempt of `module`.

    Raises:
        errors.ValidationError: nothing named, or a prefix that starts several ids.
        errors.NotFoundError: no flow or attempt has that id.
    """
    ref = ref.strip()
    name = await _module_name(meta, module.strip()) if module.strip() else ""
    if not ref:
        if not name:
            raise errors.ValidationError(
                "name an attempt or a flow (or a module with --module)", field="id"
            )
        found = await meta.list_attempts(module=name)
        if not found:
            raise errors.NotFoundError(f"module {name!r} has no job attempts")
        return found[-1:]
    identifiers.check_id(ref, field="id")
    with contextlib.suppress(errors.NotFoundError):
        correlation_id = await resolve_flow(meta, ref, field="id")
        found = await meta.list_attempts(correlation_id=correlation_id)
        return [a for a in found if not name or a.module == name]
    # An attempt id is `<module>-<event id>-a<n>` (naming.job_id): its module names the query.
    names = {m.spec.name for m in await meta.list_modules(include_deleted=True)}
    candidates = sorted({n for n in names if ref.startswith(f"{n}-")} | ({name} if name else set()))
    matches: list[JobAttempt] = []
    for candidate in candidates:
        matches += [a for a in await meta.list_attempts(module=candidate) if a.id.startswith(ref)]
    exact = [a for a in matches if a.id == ref]
    if exact or len(matches) == 1:
        return (exact or matches)[:1]
    if matches:
        _ambiguous("attempt id", ref, [a.id for a in matches], len(matches) > MAX_CANDIDATES, "id")
    raise errors.NotFoundError(
        f"no flow or job attempt with id {ref!r} (or one starting with it); attempt ids are in"
        " `ion flow get ID -o json`"
    )


async def _read_blob(blobs: BlobStore, key: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ion-log-") as tmp:
        path = Path(tmp) / "log"
        await blobs.get_file(key, path)
        return await asyncio.to_thread(path.read_bytes)


async def attempt_log(
    platform: Platform, attempt: JobAttempt, offset: int = 0
) -> trace_pb2.AttemptLog:
    """One attempt's log from byte `offset` on: the stored log once it ended, what the running
    job has written so far where the platform can read it (`LiveLogs`)."""
    finished = attempt.state in TERMINAL_STATES
    content, note = b"", ""
    if finished and attempt.logs_ref:
        try:
            content = await _read_blob(platform.blobs, attempt.logs_ref)
        except errors.NotFoundError:
            note = f"its stored log {attempt.logs_ref!r} is gone"
    elif finished:
        note = f"no log: the attempt ended {attempt.state.value} without running a module"
        if attempt.reason:
            note += f" ({attempt.reason})"
    elif isinstance(platform, LiveLogs):
        executor = attempt.route.executor if attempt.route is not None else None
        try:
            content = await platform.job_log(attempt.id, executor)
        except errors.NotFoundError:
            note = "the job is not running here; its log is stored when it ends"
    else:
        note = "its log is stored when the attempt ends"
    tail = content[max(0, offset) :]
    return trace_pb2.AttemptLog(
        attempt_id=attempt.id,
        module=attempt.module,
        event_id=attempt.event_id,
        correlation_id=attempt.correlation_id,
        attempt=attempt.attempt,
        state=attempt.state.value,
        content=tail,
        next_offset=max(0, offset) + len(tail),
        finished=finished,
        logs_ref=attempt.logs_ref,
        note=note,
    )


def summary_message(summary: FlowSummary) -> trace_pb2.FlowSummary:
    """A flow summary as its wire message."""
    return trace_pb2.FlowSummary(
        correlation_id=summary.correlation_id,
        root_event_id=summary.root_event_id,
        root_event_type=summary.root_event_type,
        status=summary.status.value,
        modules=summary.modules,
        runs={status.value: count for status, count in summary.runs.items()},
        started_at=summary.started_at.isoformat(),
        updated_at=summary.updated_at.isoformat(),
        cancelled_at=summary.cancelled_at.isoformat() if summary.cancelled_at else "",
    )


def _when(text: str, field: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise errors.ValidationError(
            f"field {field!r}: {text!r} is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)",
            field=field,
            rule="InvalidTime",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _statuses(values: Sequence[str]) -> list[FlowStatus]:
    out: list[FlowStatus] = []
    for value in values:
        try:
            out.append(FlowStatus(value.strip().upper()))
        except ValueError:
            known = ", ".join(s.value for s in FlowStatus)
            raise errors.ValidationError(
                f"field 'status': {value!r} is not a flow status; use one of {known}",
                field="status",
                rule="UnknownStatus",
            ) from None
    return out


class TraceService(trace_pb2_grpc.TraceServiceServicer):
    """The 2018 TraceService (GetFlow: flat documents, plus the flow tree) with short ids and
    flow statuses, plus ListFlows, CancelFlow and GetLog."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    @_rpc
    async def GetFlow(
        self, request: trace_pb2.GetFlowRequest, context: Any
    ) -> trace_pb2.GetFlowResponse:
        """Return every document of a flow and its tree (after waiting to settle, if asked)."""
        meta = self._platform.meta
        correlation_id = await resolve_flow(meta, request.correlationID, field="correlationID")
        flow: Flow | None = None
        if request.wait_seconds > 0:
            # Not settled in time is an answer too: the tree as it is now, settled=false.
            with contextlib.suppress(errors.TransientError):
                flow = await self._platform.wait_settled(
                    correlation_id, timeout=min(request.wait_seconds, MAX_WAIT_SECONDS)
                )
        if flow is None:
            flow = await self._platform.flow(correlation_id)
        documents = await meta.list_documents(correlation_id)
        if not documents:
            raise errors.NotFoundError(
                f"no flow with correlation id {correlation_id!r}; the id is printed by"
                " `ion event create` (correlationId)"
            )
        return trace_pb2.GetFlowResponse(
            flowJSON=convert.flat_flow_json(documents),
            flow=convert.flow_message(flow),
            status=flow.status.value,
        )

    @_rpc
    async def ListFlows(
        self, request: trace_pb2.ListFlowsRequest, context: Any
    ) -> trace_pb2.ListFlowsResponse:
        """Return one page of flows matching the request's filters, newest first."""
        limit = request.limit or DEFAULT_PAGE
        if not 1 <= limit <= MAX_PAGE:
            raise errors.ValidationError(
                f"field 'limit': {limit} is not between 1 and {MAX_PAGE}",
                field="limit",
                rule="Range",
            )
        query = FlowQuery(
            status=_statuses(request.status),
            module=await _module_name(self._platform.meta, request.module.strip())
            if request.module.strip()
            else "",
            root_event_type=request.root_event_type.strip(),
            started_after=_when(request.started_after, "started_after"),
            started_before=_when(request.started_before, "started_before"),
            id_prefix=request.id_prefix.strip(),
            limit=limit,
            cursor=request.cursor.strip(),
        )
        page = await self._platform.meta.list_flows(query)
        return trace_pb2.ListFlowsResponse(
            flows=[summary_message(s) for s in page.items], next_cursor=page.next_cursor
        )

    @_rpc
    async def CancelFlow(
        self, request: trace_pb2.CancelFlowRequest, context: Any
    ) -> trace_pb2.CancelFlowResponse:
        """Record the flow cancelled: dispatchers cancel its running jobs and run nothing more."""
        meta = self._platform.meta
        correlation_id = await resolve_flow(meta, request.correlation_id)
        before = await meta.get_flow_summary(correlation_id)
        after = await meta.cancel_flow(correlation_id)
        return trace_pb2.CancelFlowResponse(
            flow=summary_message(after),
            already_settled=before.status != FlowStatus.RUNNING,
        )

    @_rpc
    async def GetLog(
        self, request: trace_pb2.GetLogRequest, context: Any
    ) -> trace_pb2.GetLogResponse:
        """Return the logs of the attempts an id names (see `resolve_attempts`), oldest first."""
        found = await resolve_attempts(self._platform.meta, request.id, module=request.module)
        offset = request.offset if len(found) == 1 else 0
        return trace_pb2.GetLogResponse(
            logs=[await attempt_log(self._platform, a, offset) for a in found]
        )
