"""A flow survives the trip server -> `ion.v1.Flow` -> CLI unchanged, so `ion trace flow -o json`
and `ion-management pipeline run -o json` print the same JSON and the same tree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ion.cli.flows import flow_from_message, summary_from_message
from ion.core import FlowSummary
from ion.core.events import ROOT_PUBLISHER, pairs
from ion.core.flow import Flow, FlowAttempt, FlowEvent, FlowModuleRun
from ion.core.flowindex import FlowStatus
from ion.core.records import AttemptState, RunStatus
from ion.management.convert import flow_message
from ion.management.flows import summary_message
from ion.proto import trace_pb2
from ion.proto.v1 import types_pb2

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _flow() -> Flow:
    """A flow with every field set, and every optional one both set and unset."""
    leaf = FlowEvent(
        event_id="e2",
        event_type="image.small",
        published_by="resize",
        parent_event_id="e1",
        files=["small.png"],
        data=pairs({"small.png": "http://x/small.png", "w": "10"}),
    )
    run = FlowModuleRun(
        module="resize",
        status=RunStatus.SUCCEEDED,
        attempts=[
            FlowAttempt(
                id="j1",
                attempt=1,
                state=AttemptState.FAILED,
                started_at=T0,
                finished_at=T0 + timedelta(seconds=1),
                exit_code=3,
                reason="exited with code 3",
                logs_ref="logs/1",
                dispatcher="d1",
            ),
            FlowAttempt(
                id="j2",
                attempt=2,
                state=AttemptState.SUCCEEDED,
                started_at=T0 + timedelta(seconds=2),
                finished_at=T0 + timedelta(seconds=3.5),
                exit_code=0,
            ),
        ],
        duration_seconds=3.5,
        outputs=["c/e1/resize/small.png"],
        insights=pairs({"faces": "3"}),
        logs=["http://x/logs/1", "http://x/logs/2"],
        children=[leaf],
    )
    pending = FlowModuleRun(module="tag", status=RunStatus.PENDING)
    running = FlowModuleRun(
        module="slow",
        status=RunStatus.RUNNING,
        attempts=[FlowAttempt(id="j3", attempt=1, state=AttemptState.RUNNING, started_at=T0)],
    )
    root = FlowEvent(
        event_id="e1",
        event_type="image.new",
        published_by=ROOT_PUBLISHER,
        parent_event_id=ROOT_PUBLISHER,
        triggered=[run, pending, running],
    )
    ghost = FlowEvent(
        event_id="g", event_type="image.new", parent_event_id="p", missing_document=True
    )
    return Flow(correlation_id="c", roots=[root, ghost], settled=False, succeeded=False)


def test_a_flow_round_trips_through_the_proto_losslessly() -> None:
    flow = _flow()
    message = flow_message(flow)
    back = flow_from_message(types_pb2.Flow.FromString(message.SerializeToString()))
    assert back == flow
    assert back.model_dump(mode="json") == flow.model_dump(mode="json")


def test_the_proto_keeps_root_for_older_clients_and_reads_a_server_that_sends_only_root() -> None:
    message = flow_message(_flow())
    assert message.root == message.roots[0]
    old = types_pb2.Flow(correlation_id="c", root=message.roots[0], settled=True)
    assert [e.event_id for e in flow_from_message(old).roots] == ["e1"]


def test_unset_values_stay_unset_on_the_wire() -> None:
    message = flow_message(_flow())
    pending = message.roots[0].triggered[1]
    assert not pending.HasField("duration_seconds")
    running = message.roots[0].triggered[2].attempts[0]
    assert not running.HasField("exit_code") and running.finished_at == ""


def test_the_flow_status_travels_beside_the_tree_and_is_derived_from_an_older_server() -> None:
    flow = _flow().model_copy(update={"status": FlowStatus.CANCELLED})
    message = types_pb2.Flow.FromString(flow_message(flow).SerializeToString())
    assert flow_from_message(message, status="CANCELLED") == flow
    # a server too old to send a status: the tree's own (RUNNING: a run is pending)
    assert flow_from_message(message).status == FlowStatus.RUNNING


def test_a_flow_summary_round_trips_through_the_proto() -> None:
    summary = FlowSummary(
        correlation_id="c",
        root_event_id="e1",
        root_event_type="image.new",
        status=FlowStatus.CANCELLED,
        modules=["resize", "tag"],
        runs={RunStatus.SUCCEEDED: 1, RunStatus.CANCELLED: 2},
        started_at=T0,
        updated_at=T0 + timedelta(seconds=2),
        cancelled_at=T0 + timedelta(seconds=1),
    )
    message = trace_pb2.FlowSummary.FromString(summary_message(summary).SerializeToString())
    assert summary_from_message(message) == summary
    running = summary.model_copy(update={"cancelled_at": None, "status": FlowStatus.RUNNING})
    assert summary_from_message(summary_message(running)) == running
