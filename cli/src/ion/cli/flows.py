"""The flow the server sends (`ion.v1.Flow`) back as Ion's flow model (`ion.core.flow.Flow`),
and a flow summary (`FlowSummary` of trace.proto) back as `ion.core.FlowSummary`.

The inverse of the server's `flow_message`: the CLI draws the model with the same renderer as
`ion-management pipeline run` (`ion.core.flowtree`) and writes the same JSON
(`Flow.model_dump(mode="json")`). A test holds the two conversions to a lossless round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ion.core import (
    AttemptState,
    FlowStatus,
    FlowSummary,
    KeyValuePair,
    Resources,
    RouteChoice,
    RunStatus,
)
from ion.core.flow import Flow, FlowAttempt, FlowEvent, FlowModuleRun, settle
from ion.proto import trace_pb2
from ion.proto.v1 import types_pb2


def _time(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _pairs(items: Iterable[types_pb2.KeyValue]) -> list[KeyValuePair]:
    return [KeyValuePair(key=kv.key, value=kv.value) for kv in items]


def _route(message: types_pb2.RouteChoice) -> RouteChoice:
    res = message.resources
    return RouteChoice(
        index=message.index if message.HasField("index") else None,
        executor=message.executor,
        when=message.when,
        resources=Resources(cpu=res.cpu, memory=res.memory, gpu=res.gpu),
        notes=message.notes,
    )


def _attempt(message: types_pb2.Attempt) -> FlowAttempt:
    return FlowAttempt(
        id=message.id,
        attempt=message.attempt,
        state=AttemptState(message.state),
        started_at=_time(message.started_at),
        finished_at=_time(message.finished_at),
        exit_code=message.exit_code if message.HasField("exit_code") else None,
        reason=message.reason,
        logs_ref=message.logs_ref,
        dispatcher=message.dispatcher,
        route=_route(message.route) if message.HasField("route") else None,
    )


def _run(message: types_pb2.FlowModuleRun) -> FlowModuleRun:
    return FlowModuleRun(
        module=message.module,
        status=RunStatus(message.status),
        attempts=[_attempt(a) for a in message.attempts],
        duration_seconds=(
            message.duration_seconds if message.HasField("duration_seconds") else None
        ),
        outputs=list(message.outputs),
        insights=_pairs(message.insights),
        logs=list(message.logs),
        reason=message.reason,
        children=[_event(c) for c in message.children],
    )


def _event(message: types_pb2.FlowEvent) -> FlowEvent:
    return FlowEvent(
        event_id=message.event_id,
        event_type=message.event_type,
        published_by=message.published_by,
        parent_event_id=message.parent_event_id,
        files=list(message.files),
        data=_pairs(message.data),
        triggered=[_run(r) for r in message.triggered],
        missing_document=message.missing_document,
    )


def flow_from_message(message: types_pb2.Flow, *, status: str = "") -> Flow:
    """Return an `ion.v1.Flow` as the flow model (a server too old for `roots` sends `root`).

    `status`: the flow's status as the server sent it beside the tree (`GetFlowResponse`); a
    server too old to send one has it derived from the tree here.
    """
    roots = list(message.roots) or ([message.root] if message.HasField("root") else [])
    flow = Flow(
        correlation_id=message.correlation_id,
        roots=[_event(r) for r in roots],
        settled=message.settled,
        succeeded=message.succeeded,
    )
    flow.status = FlowStatus(status) if status else settle(flow.model_copy(deep=True)).status
    return flow


def summary_from_message(message: trace_pb2.FlowSummary) -> FlowSummary:
    """Return a flow summary message as `ion.core.FlowSummary`."""
    return FlowSummary(
        correlation_id=message.correlation_id,
        root_event_id=message.root_event_id,
        root_event_type=message.root_event_type,
        status=FlowStatus(message.status),
        modules=list(message.modules),
        runs={RunStatus(k): v for k, v in message.runs.items()},
        started_at=datetime.fromisoformat(message.started_at),
        updated_at=datetime.fromisoformat(message.updated_at),
        cancelled_at=_time(message.cancelled_at),
    )
