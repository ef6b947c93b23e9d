"""The 2018 wire format: service and method names, message field numbers and types.

Bytes are built by hand from the 2018 .proto field numbers only, then parsed with the stubs,
and the other way round; the server-side proof (a raw-bytes client against a running server)
is management/tests/test_wire_2018.py.
"""

from __future__ import annotations

from ion.proto import module_pb2, trace_pb2


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string_field(number: int, value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(raw)) + raw


def int_field(number: int, value: int) -> bytes:
    return varint(number << 3 | 0) + varint(value)


def test_service_and_method_paths_have_no_package() -> None:
    module = module_pb2.DESCRIPTOR.services_by_name["ModuleService"]
    assert module.full_name == "ModuleService"
    # 2018's four, then Ion's additions (new methods only: old clients never call them)
    assert [m.name for m in module.methods] == [
        "Create",
        "Delete",
        "Get",
        "List",
        "Apply",
        "DeleteStream",
    ]
    assert [m.full_name for m in module.methods][:4] == [
        "ModuleService.Create",
        "ModuleService.Delete",
        "ModuleService.Get",
        "ModuleService.List",
    ]
    trace = trace_pb2.DESCRIPTOR.services_by_name["TraceService"]
    assert trace.full_name == "TraceService"
    assert [m.name for m in trace.methods] == ["GetFlow", "ListFlows", "CancelFlow", "GetLog"]
    assert module_pb2.DESCRIPTOR.package == "" and trace_pb2.DESCRIPTOR.package == ""


def test_2018_create_request_bytes_parse_into_the_stub() -> None:
    raw = b"".join(
        [
            string_field(1, "downloader"),
            string_field(2, "frontapi.new_link"),
            string_field(3, "file_downloaded"),
            string_field(4, "me/downloader"),
            string_field(5, "dotjson/ion-handler"),
            int_field(6, 2),
            int_field(7, 3),
            string_field(8, "Kubernetes"),
            int_field(9, 5),
            string_field(10, string_field(1, "K") + string_field(2, "V")),
        ]
    )
    req = module_pb2.ModuleCreateRequest.FromString(raw)
    assert (req.modulename, req.eventsubscriptions, req.eventpublications) == (
        "downloader",
        "frontapi.new_link",
        "file_downloaded",
    )
    assert (req.moduleimage, req.handlerimage, req.provider) == (
        "me/downloader",
        "dotjson/ion-handler",
        "Kubernetes",
    )
    assert (req.instancecount, req.retrycount, req.maxexecutiontimemins) == (2, 3, 5)
    assert dict(req.configmap) == {"K": "V"}


def test_2018_response_fields_keep_their_numbers() -> None:
    get = module_pb2.ModuleGetResponse(name="a-1", status="RUNNING", statusMessage="ok")
    assert get.SerializeToString() == (
        string_field(1, "a-1") + string_field(2, "RUNNING") + string_field(3, "ok")
    )
    listed = module_pb2.ModuleListResponse(names=["a", "b"])
    assert listed.SerializeToString() == string_field(1, "a") + string_field(1, "b")
    assert module_pb2.ModuleCreateResponse(name="x").SerializeToString() == string_field(1, "x")
    assert module_pb2.ModuleDeleteResponse(name="x").SerializeToString() == string_field(1, "x")
    flow = trace_pb2.GetFlowResponse(flowJSON="[]")
    assert flow.SerializeToString() == string_field(1, "[]")
    assert trace_pb2.GetFlowRequest.FromString(string_field(1, "c")).correlationID == "c"


def test_ion_fields_are_new_numbers_old_parsers_skip() -> None:
    full = module_pb2.ModuleGetResponse(name="a", dispatchers_running=2, succeeded=7)
    legacy_view = module_pb2.ModuleGetResponse.FromString(full.SerializeToString())
    assert legacy_view.name == "a"
    numbers = {f.name: f.number for f in module_pb2.ModuleGetResponse.DESCRIPTOR.fields}
    assert numbers["name"] == 1 and numbers["status"] == 2 and numbers["statusMessage"] == 3
    assert min(n for k, n in numbers.items() if k not in ("name", "status", "statusMessage")) > 3
