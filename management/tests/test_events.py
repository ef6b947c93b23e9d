"""ion.v1 EventService and DeadLetterService, and TraceService.GetFlow, over mTLS."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import grpc
import pytest

from ion.proto import module_pb2, module_pb2_grpc, trace_pb2, trace_pb2_grpc
from ion.proto.v1 import events_pb2, events_pb2_grpc, types_pb2


@pytest.fixture
def events(channel: Any) -> Any:
    return events_pb2_grpc.EventServiceStub(channel)


@pytest.fixture
def dead_letters(channel: Any) -> Any:
    return events_pb2_grpc.DeadLetterServiceStub(channel)


@pytest.fixture
async def module_id(channel: Any) -> str:
    stub = module_pb2_grpc.ModuleServiceStub(channel)
    created = await stub.Create(
        module_pb2.ModuleCreateRequest(
            modulename="resize", eventsubscriptions="image.uploaded", command=["true"]
        ),
        timeout=5,
    )
    return str(created.name)


async def _publish(events: Any, **kwargs: Any) -> Any:
    request = events_pb2.PublishEventRequest(
        event_type="image.uploaded",
        data=[
            types_pb2.KeyValue(key="size", value="64"),
            types_pb2.KeyValue(key="mode", value="x"),
        ],
        files=[events_pb2.File(name="a.txt", content=b"hello")],
        **kwargs,
    )
    return await events.Publish(request, timeout=5)


async def _error(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_publish_raises_a_root_event_with_data_and_files(
    events: Any, running: Any, module_id: str
) -> None:
    reply = await _publish(events)
    assert reply.event.published_by == "frontapi" and reply.event.parent_event_id == "frontapi"
    assert reply.event.event_type == "image.uploaded"
    body = json.loads(reply.event_json)
    assert body["context"]["eventId"] == reply.event.event_id
    assert body["context"]["documentType"] == "eventMeta"
    got = await events.Get(
        events_pb2.GetEventRequest(
            event_id=reply.event.event_id, correlation_id=reply.event.correlation_id
        ),
        timeout=5,
    )
    assert list(got.files) == ["a.txt"]
    assert [(kv.key, kv.value) for kv in got.data][:2] == [("size", "64"), ("mode", "x")]
    assert json.loads(got.event_meta_json)["id"] == reply.event.event_id
    blobs = await running.stub.platform.blobs.list(got.files_prefix)
    assert [b.key.rsplit("/", 1)[-1] for b in blobs] == ["a.txt"]


async def test_publish_continues_a_flow_when_given_its_correlation_id(events: Any) -> None:
    reply = await _publish(events, correlation_id="flow-1")
    assert reply.event.correlation_id == "flow-1"


@pytest.mark.parametrize(
    ("event_type", "file_name", "field"),
    [("not valid!", "a.txt", "event_type"), ("ok", "../escape", "files"), ("ok", "", "files")],
)
async def test_publish_refuses_bad_input(
    events: Any, event_type: str, file_name: str, field: str
) -> None:
    request = events_pb2.PublishEventRequest(
        event_type=event_type, files=[events_pb2.File(name=file_name, content=b"x")]
    )
    err = await _error(events.Publish(request, timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("ion-field", field) in tuple(err.trailing_metadata() or ())


async def test_get_of_an_unknown_event_is_not_found(events: Any) -> None:
    err = await _error(events.Get(events_pb2.GetEventRequest(event_id="nope"), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_peek_shows_waiting_messages_by_module_or_subscription(
    events: Any, module_id: str
) -> None:
    reply = await _publish(events)
    for request in (
        events_pb2.PeekRequest(module=module_id),
        events_pb2.PeekRequest(event_type="image.uploaded", subscription="image.uploaded_resize"),
    ):
        peeked = await events.Peek(request, timeout=5)
        assert [m.message_id for m in peeked.messages] == [reply.event.event_id]
        assert json.loads(peeked.messages[0].body)["type"] == "image.uploaded"
        assert peeked.messages[0].subscription == "image.uploaded_resize"
    err = await _error(events.Peek(events_pb2.PeekRequest(), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_dead_letters_are_listed_with_reasons_and_replayed(
    events: Any, dead_letters: Any, running: Any, module_id: str
) -> None:
    reply = await _publish(events)
    bus = running.stub.platform.bus
    [message] = await bus.receive(
        "image.uploaded", "image.uploaded_resize", max_wait=timedelta(seconds=1)
    )
    await bus.dead_letter(message, reason="ModuleFailed", description="exit code 3")
    listed = await dead_letters.List(events_pb2.ListDeadLettersRequest(), timeout=5)
    [item] = listed.dead_letters
    assert item.module == module_id
    assert item.message.dead_letter_reason == "ModuleFailed"
    assert item.message.dead_letter_description == "exit code 3"
    assert item.event.event_id == reply.event.event_id
    assert item.event.correlation_id == reply.event.correlation_id
    by_name = await dead_letters.List(events_pb2.ListDeadLettersRequest(module="resize"), timeout=5)
    assert len(by_name.dead_letters) == 1
    replayed = await dead_letters.Replay(
        events_pb2.ReplayDeadLetterRequest(module="resize", message_id=item.message.message_id),
        timeout=5,
    )
    assert replayed.module == module_id
    assert not (
        await dead_letters.List(events_pb2.ListDeadLettersRequest(), timeout=5)
    ).dead_letters
    peeked = await events.Peek(events_pb2.PeekRequest(module=module_id), timeout=5)
    assert len(peeked.messages) == 1
    err = await _error(
        dead_letters.Replay(
            events_pb2.ReplayDeadLetterRequest(module="resize", message_id="nope"), timeout=5
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_get_flow_returns_2018_flat_json_and_the_tree(channel: Any, events: Any) -> None:
    reply = await _publish(events)
    trace = trace_pb2_grpc.TraceServiceStub(channel)
    flow = await trace.GetFlow(
        trace_pb2.GetFlowRequest(correlationID=reply.event.correlation_id), timeout=5
    )
    documents = json.loads(flow.flowJSON)
    assert [d["context"]["documentType"] for d in documents] == ["eventMeta"]
    assert flow.flowJSON.startswith("[{\n    ")
    assert flow.flow.correlation_id == reply.event.correlation_id
    assert flow.flow.root.event_id == reply.event.event_id
    assert [r.event_id for r in flow.flow.roots] == [reply.event.event_id]
    waited = await trace.GetFlow(
        trace_pb2.GetFlowRequest(correlationID=reply.event.correlation_id, wait_seconds=1),
        timeout=5,
    )
    assert waited.flow.settled


async def test_get_flow_of_an_unknown_or_empty_id_fails_clearly(channel: Any) -> None:
    trace = trace_pb2_grpc.TraceServiceStub(channel)
    err = await _error(trace.GetFlow(trace_pb2.GetFlowRequest(correlationID="nope"), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await _error(trace.GetFlow(trace_pb2.GetFlowRequest(), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_takes_a_short_event_id_as_the_flow_trees_print_it(events: Any) -> None:
    first = await _publish(events)
    full = first.event.event_id
    for short, correlation_id in ((full[:8], ""), (full[:8], first.event.correlation_id)):
        got = await events.Get(
            events_pb2.GetEventRequest(event_id=short, correlation_id=correlation_id), timeout=5
        )
        assert json.loads(got.event_meta_json)["id"] == full
    # without the flow's id, a full id is found in any flow too
    got = await events.Get(events_pb2.GetEventRequest(event_id=full), timeout=5)
    assert json.loads(got.event_meta_json)["id"] == full
    err = await _error(
        events.Get(
            events_pb2.GetEventRequest(event_id=full[:8], correlation_id="another-flow"),
            timeout=5,
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_get_refuses_a_short_event_id_that_starts_several(events: Any) -> None:
    ids = set()
    while True:  # two events whose ids share their first character
        reply = await _publish(events)
        ids.add(reply.event.event_id)
        firsts = [i for i in ids if i[0] == reply.event.event_id[0]]
        if len(firsts) > 1:
            break
    err = await _error(events.Get(events_pb2.GetEventRequest(event_id=firsts[0][0]), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ambiguous" in (err.details() or "")
    assert all(i in (err.details() or "") for i in sorted(firsts)[:2])
