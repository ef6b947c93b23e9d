"""ModuleService over mTLS: create (validation, conflicts, ids), get (status, counts), list, delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from ion.core import AttemptState, JobAttempt, errors
from ion.proto import module_pb2, module_pb2_grpc


def _request(name: str = "resize", **overrides: Any) -> module_pb2.ModuleCreateRequest:
    fields: dict[str, Any] = {
        "modulename": name,
        "eventsubscriptions": "image.uploaded",
        "eventpublications": "image.resized,image.failed",
        "command": ["python", "resize.py"],
        "instancecount": 2,
        "retrycount": 3,
        "maxexecutiontimemins": 2,
        "configmap": {"SIZE": "64"},
    }
    fields.update(overrides)
    return module_pb2.ModuleCreateRequest(**fields)


@pytest.fixture
def stub(channel: Any) -> Any:
    return module_pb2_grpc.ModuleServiceStub(channel)


async def _error(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_create_stores_the_spec_and_starts_dispatchers(stub: Any, running: Any) -> None:
    created = await stub.Create(_request(), timeout=5)
    assert created.name.startswith("resize-") and len(created.name) == len("resize-") + 5
    record = await running.stub.platform.meta.get_module(created.name)
    assert record.spec.subscribes_to == "image.uploaded"
    assert record.spec.publishes == ["image.resized", "image.failed"]
    assert record.spec.env == {"SIZE": "64"}
    assert record.spec.max_execution_seconds == 120
    assert record.spec.retry_count == 3 and record.spec.instance_count == 2
    assert record.provider == "local"
    got = await stub.Get(module_pb2.ModuleGetRequest(name=created.name), timeout=5)
    assert got.status == "RUNNING" and got.dispatchers_running == 2
    assert got.module.subscription == "image.uploaded_resize"
    assert "2/2 dispatchers running" in got.statusMessage


async def test_ion_fields_override_2018_ones(stub: Any, running: Any) -> None:
    request = _request(env={"SIZE": "128", "MODE": "fast"}, max_in_flight=7, working_dir="/tmp")
    request.max_execution_seconds = 30
    request.retry_backoff_seconds = 0.5
    request.resources.cpu = "500m"
    created = await stub.Create(request, timeout=5)
    spec = (await running.stub.platform.meta.get_module(created.name)).spec
    assert spec.env == {"SIZE": "128", "MODE": "fast"}
    assert spec.max_execution_seconds == 30 and spec.retry_backoff_seconds == 0.5
    assert spec.max_in_flight == 7 and spec.working_dir == "/tmp" and spec.resources.cpu == "500m"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"modulename": "Bad_Name"}, "modulename"),
        ({"modulename": ""}, "modulename"),
        ({"eventsubscriptions": ""}, "eventsubscriptions"),
        ({"eventsubscriptions": "a b"}, "eventsubscriptions"),
        ({"eventpublications": "ok,not ok"}, "eventpublications"),
        ({"command": [], "moduleimage": ""}, "moduleimage"),
        ({"retrycount": -1}, "retrycount"),
        ({"instancecount": 5000}, "instancecount"),
        ({"configmap": {"1BAD": "x"}}, "configmap"),
        ({"provider": "kubernetes"}, "provider"),
    ],
)
async def test_create_refuses_an_invalid_spec_naming_the_field(
    stub: Any, overrides: dict[str, Any], field: str
) -> None:
    err = await _error(stub.Create(_request(**overrides), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.details()
    assert ("ion-field", field) in tuple(err.trailing_metadata() or ())


async def test_create_refuses_a_name_a_live_module_has(stub: Any) -> None:
    first = await stub.Create(_request(), timeout=5)
    err = await _error(stub.Create(_request(), timeout=5))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.name in err.details()


async def test_ids_never_collide_even_for_one_name_recreated_quickly(stub: Any) -> None:
    ids = set()
    for _ in range(15):
        created = await stub.Create(_request(), timeout=5)
        ids.add(created.name)
        await stub.Delete(module_pb2.ModuleDeleteRequest(name=created.name), timeout=5)
    assert len(ids) == 15


async def test_get_and_delete_of_an_unknown_module_are_not_found(stub: Any) -> None:
    for call in (
        stub.Get(module_pb2.ModuleGetRequest(name="nope-12345"), timeout=5),
        stub.Delete(module_pb2.ModuleDeleteRequest(name="nope-12345"), timeout=5),
    ):
        err = await _error(call)
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert "nope-12345" in err.details()


async def test_get_counts_attempts_and_queued_messages(stub: Any, running: Any) -> None:
    created = await stub.Create(_request(), timeout=5)
    meta = running.stub.platform.meta
    now = datetime.now(UTC)
    states = [
        AttemptState.SUCCEEDED,
        AttemptState.SUCCEEDED,
        AttemptState.FAILED,
        AttemptState.DEAD_LETTERED,
        AttemptState.RUNNING,
    ]
    for i, state in enumerate(states):
        await meta.upsert_attempt(
            JobAttempt(
                id=f"job-{i}",
                module="resize",
                event_id=f"e{i}",
                correlation_id="c",
                state=state,
                started_at=now,
            )
        )
    await running.stub.platform.raise_event("image.uploaded", data={"k": "v"})
    got = await stub.Get(module_pb2.ModuleGetRequest(name=created.name), timeout=5)
    # the dead-lettered event's last attempt failed too: 2 failed attempts, 1 event given up
    assert (got.succeeded, got.failed, got.dead_lettered, got.running) == (2, 2, 1, 1)
    assert got.queued == 1 and got.dead_letter_queue == 0
    assert "2 succeeded, 2 failed, 1 dead-lettered" in got.statusMessage


async def test_get_and_delete_accept_the_module_name(stub: Any) -> None:
    created = await stub.Create(_request(), timeout=5)
    got = await stub.Get(module_pb2.ModuleGetRequest(name="resize"), timeout=5)
    assert got.name == created.name
    deleted = await stub.Delete(module_pb2.ModuleDeleteRequest(name="resize"), timeout=5)
    assert deleted.name == created.name


async def test_delete_stops_dispatchers_removes_the_subscription_and_keeps_history(
    stub: Any, running: Any
) -> None:
    created = await stub.Create(_request(), timeout=5)
    bus = running.stub.platform.bus
    await bus.receive("image.uploaded", "image.uploaded_resize", max_wait=timedelta(0))
    deleted = await stub.Delete(module_pb2.ModuleDeleteRequest(name=created.name), timeout=5)
    assert deleted.name == created.name
    with pytest.raises(errors.NotFoundError):
        await bus.receive("image.uploaded", "image.uploaded_resize", max_wait=timedelta(0))
    got = await stub.Get(module_pb2.ModuleGetRequest(name=created.name), timeout=5)
    assert got.status == "DELETED" and got.dispatchers_running == 0
    assert (await stub.List(module_pb2.ModuleListRequest(), timeout=5)).names == []
    listed = await stub.List(module_pb2.ModuleListRequest(include_deleted=True), timeout=5)
    assert listed.names == [created.name] and listed.modules[0].deleted
    again = await stub.Delete(module_pb2.ModuleDeleteRequest(name=created.name), timeout=5)
    assert again.name == created.name


async def test_list_returns_ids_and_details(stub: Any) -> None:
    a = await stub.Create(_request("alpha"), timeout=5)
    b = await stub.Create(_request("beta", eventsubscriptions="other"), timeout=5)
    listed = await stub.List(module_pb2.ModuleListRequest(), timeout=5)
    assert listed.names == sorted([a.name, b.name])
    assert [m.name for m in listed.modules] == ["alpha", "beta"]
    assert all(m.status == "RUNNING" for m in listed.modules)


async def test_restart_restores_live_modules(running: Any, stub: Any) -> None:
    created = await stub.Create(_request(), timeout=5)
    platform = running.stub.platform
    await platform.stop_module(created.name, remove_subscription=False)
    assert platform.module_status(created.name).dispatchers_running == 0
    assert await running.stub.registry.restore() == [created.name]
    assert platform.module_status(created.name).dispatchers_running == 2
