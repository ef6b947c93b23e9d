"""The front API and gRPC refuse what the bus would dead-letter, naming the field, never INTERNAL.

Both entry points check ids, event types, file names and data with `ion.core.identifiers`, the
rules `Event.from_json` applies on the bus: the front API answers 400 (413 for sizes) with a
JSON `{"error", "field", "reason"}`, gRPC answers INVALID_ARGUMENT with the field in the
`ion-field` trailer. A refused request stores and publishes nothing.
"""

from __future__ import annotations

import io
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest

from ion.core import identifiers
from ion.core.config import IonSettings
from ion.core.ports import SubscriptionOptions
from ion.management.front_api import start_front_api
from ion.management.testing import CertificateSet, StubPlatform
from ion.proto import trace_pb2, trace_pb2_grpc
from ion.proto.v1 import events_pb2, events_pb2_grpc, types_pb2

pytestmark = pytest.mark.filterwarnings(
    "ignore:unread_data\\(\\) is deprecated:DeprecationWarning"  # inside aiohttp's read_chunk
)

TOKEN = "rules-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL_FILE_CAP = 256 * 1024
SMALL_REQUEST_CAP = 1024 * 1024


@dataclass
class Front:
    url: str
    platform: StubPlatform
    certs: CertificateSet
    raised: list[str] = field(default_factory=list)

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certs.pki.ca_cert))


async def _front(settings: IonSettings, certs: CertificateSet, **caps: int) -> AsyncIterator[Front]:
    async with StubPlatform(settings) as platform:
        front = Front(url="", platform=platform, certs=certs)
        publish = platform.bus.publish

        async def counting(topic: str, messages: Any) -> None:  # every raised event passes here
            await publish(topic, messages)
            front.raised.extend(m.message_id for m in messages)

        platform.bus.publish = counting  # type: ignore[method-assign]
        runner, port = await start_front_api(
            platform, host="127.0.0.1", port=0, tls=certs.pki.server, token=TOKEN, **caps
        )
        front.url = f"https://localhost:{port}"
        try:
            yield front
        finally:
            await runner.cleanup()


@pytest.fixture
async def front(settings: IonSettings, certs: CertificateSet) -> AsyncIterator[Front]:
    async for f in _front(settings, certs):
        yield f


@pytest.fixture
async def small_front(settings: IonSettings, certs: CertificateSet) -> AsyncIterator[Front]:
    async for f in _front(
        settings, certs, max_file_bytes=SMALL_FILE_CAP, max_request_bytes=SMALL_REQUEST_CAP
    ):
        yield f


async def _post(front: Front, path: str, **kwargs: Any) -> tuple[int, Any]:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    async with (
        aiohttp.ClientSession() as session,
        session.post(front.url + path, ssl=front.ssl(), headers=headers, **kwargs) as response,
    ):
        raw = await response.read()
        assert response.content_type == "application/json", (response.status, raw[:200])
        return response.status, json.loads(raw)


def _refused(status: int, body: Any, *, code: int = 400) -> dict[str, str]:
    assert status == code, body
    assert body["error"] and body["field"] and body["reason"], body
    return {"field": body["field"], "reason": body["reason"]}


# --- front API: ids, types and data --------------------------------------------------------------


@pytest.mark.parametrize(
    "correlation_id",
    ["..%2Fx", "../x", "a%2Fb", "a%5Cb", "a%00b", "a%0Ab", "x" * 129, "%C3%BCber", "a%20b"],
)
async def test_front_api_refuses_unsafe_correlation_ids(front: Front, correlation_id: str) -> None:
    status, body = await _post(
        front, f"/events/image.uploaded?correlation_id={correlation_id}", json={"k": "v"}
    )
    assert _refused(status, body) == {"field": "correlation_id", "reason": "InvalidId"}
    assert front.raised == []


async def test_front_api_keeps_accepting_the_ids_2018_clients_send(front: Front) -> None:
    for correlation_id in ("dev", "DEV-Flow_1.2", "0BFF834F-4DFC-484A-80ED-4F2CFC149C23"):
        status, body = await _post(
            front, f"/events/image.uploaded?correlation_id={correlation_id}", json={"k": "v"}
        )
        assert status == 201, body
        assert body["context"]["correlationId"] == correlation_id
    assert len(front.raised) == 3


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "body", "TooDeep"),
        (b'{"k": ' + b"[" * 50 + b"]" * 50 + b"}", "data.k.0.0", "TooDeep"),
        (b'{"k": ' + b"9" * 5000 + b"}", "body", "InvalidNumber"),
        (b'{"k": NaN}', "body", "NotJson"),
        (b'{"k": "\\ud800"}', "data.k", "InvalidText"),
        (b'{"k": "a\\u0000b"}', "data.k", "InvalidText"),
        (b'{"k": "\xff"}', "body", "InvalidText"),
        (b'{"k": 1}', "data.k", "WrongType"),
        (b'{"": "v"}', "data", "InvalidKey"),
        (b'{"a\\nb": "v"}', "data", "InvalidKey"),
        (json.dumps({"k": "v" * 70_000}).encode(), "data.k", "TooLarge"),
        (json.dumps({f"k{i}": "" for i in range(1001)}).encode(), "data", "TooLarge"),
        (json.dumps({f"k{i}": "v" * 60_000 for i in range(5)}).encode(), "data", "TooLarge"),
        (b'"just a string"', "body", "WrongType"),
    ],
)
async def test_front_api_refuses_bad_json_bodies_with_the_field(
    front: Front, payload: bytes, field: str, reason: str
) -> None:
    status, body = await _post(
        front,
        "/events/image.uploaded",
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    refused = _refused(status, body)
    assert refused["reason"] == reason
    assert refused["field"] == field or refused["field"].startswith(field + "."), refused
    assert front.raised == []


@pytest.mark.parametrize(
    "path", ["/events/bad%20type", "/events/-x", "/events/" + "t" * 121, "/events/a%00b"]
)
async def test_front_api_refuses_bad_event_types(front: Front, path: str) -> None:
    status, body = await _post(front, path, json={"k": "v"})
    assert _refused(status, body) == {"field": "event_type", "reason": "InvalidEventType"}


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (b"[" * 100_000, "body", "TooDeep"),
        (b'{"url": "http://x/\\u0000"}', "url", "InvalidText"),
        (b'{"url": "\\udfff"}', "url", "InvalidText"),
        (b'{"url": ' + b"1" * 5000 + b"}", "body", "InvalidNumber"),
    ],
)
async def test_2018_route_refuses_bad_bodies(
    front: Front, payload: bytes, field: str, reason: str
) -> None:
    status, body = await _post(front, "/", data=payload)
    assert _refused(status, body) == {"field": field, "reason": reason}
    assert front.raised == []


# --- front API: multipart ------------------------------------------------------------------------


BOUNDARY = "ion-test-boundary"


def _multipart(*parts: tuple[str, bytes]) -> dict[str, Any]:
    """Keyword arguments posting a raw multipart body: (Content-Disposition params, content).

    Built by hand so names reach the server exactly as a browser or curl may send them.
    """
    body = b""
    for disposition, content in parts:
        body += f"--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode()
        body += content + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return {
        "data": body,
        "headers": {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    }


@pytest.mark.parametrize(
    "disposition",
    [
        'name="f"; filename="../escape.txt"',
        'name="f"; filename="dir/a.txt"',
        'name="f"; filename=".."',
        'name="f"; filename="C:\\\\Users\\\\me\\\\a.txt"',
        "name=\"f\"; filename*=UTF-8''%2E%2E%2Fx",
        "name=\"f\"; filename*=UTF-8''a%01b.txt",
        "name=\"f\"; filename*=UTF-8''a%00b.txt",
        "name=\"f\"; filename*=UTF-8''a%0Ab.txt",
        f'name="f"; filename="{"x" * 256}"',
    ],
)
async def test_front_api_refuses_unsafe_file_names(front: Front, disposition: str) -> None:
    status, body = await _post(front, "/events/image.uploaded", **_multipart((disposition, b"d")))
    assert _refused(status, body) == {"field": "files", "reason": "InvalidFileName"}
    assert front.raised == []


async def test_front_api_refuses_two_files_of_one_name(front: Front) -> None:
    form = _multipart(
        ('name="a"; filename="same.txt"', b"1"), ('name="b"; filename="same.txt"', b"2")
    )
    status, body = await _post(front, "/events/image.uploaded", **form)
    assert _refused(status, body) == {"field": "files", "reason": "DuplicateFileName"}


@pytest.mark.parametrize(
    ("disposition", "value", "field", "reason"),
    [
        ('name="k"', b"\xff\xfe", "data.k", "InvalidText"),
        ('name="k"', b"a\x00b", "data.k", "InvalidText"),
        ('name="k"', b"v" * (4 * identifiers.MAX_VALUE_CHARS + 1), "data.k", "TooLarge"),
        ('name="k"', b"v" * (identifiers.MAX_VALUE_CHARS + 1), "data.k", "TooLarge"),
        ("name*=UTF-8''a%01b", b"v", "data", "InvalidKey"),
        ("name*=UTF-8''a%0Ab", b"v", "data", "InvalidKey"),
        ("name*=UTF-8''" + "k" * 257, b"v", "data", "TooLarge"),
    ],
)
async def test_front_api_refuses_bad_form_fields(
    front: Front, disposition: str, value: bytes, field: str, reason: str
) -> None:
    status, body = await _post(front, "/events/image.uploaded", **_multipart((disposition, value)))
    assert _refused(status, body) == {"field": field, "reason": reason}
    assert front.raised == []


async def test_form_fields_and_files_within_the_rules_are_raised(front: Front) -> None:
    form = _multipart(
        ('name="mode"', "fäst\nline".encode()),
        ('name="f"; filename="My Photo (1).png"', b"\x89PNG"),
    )
    status, body = await _post(front, "/events/image.uploaded", **form)
    assert status == 201, body
    meta = await front.platform.meta.get_event_meta(
        body["context"]["correlationId"], body["context"]["eventId"]
    )
    assert meta.files == ["My Photo (1).png"]
    assert ("mode", "fäst\nline") in [(p.key, p.value) for p in meta.data]


async def _streamed_form(parts: list[tuple[str, str | None, int]]) -> aiohttp.MultipartWriter:
    """A multipart body of unknown length (sent chunked), each part `size` bytes of zeros."""
    writer = aiohttp.MultipartWriter("form-data")

    async def zeros(size: int) -> AsyncIterator[bytes]:
        chunk = bytes(1024 * 1024)
        while size > 0:
            yield chunk[: min(size, len(chunk))]
            size -= len(chunk)

    for name, filename, size in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        writer.append(zeros(size), {"Content-Disposition": disposition})
    return writer


async def test_a_file_part_over_the_file_cap_is_413_and_nothing_is_raised(
    small_front: Front,
) -> None:
    form = await _streamed_form([("file", "big.bin", SMALL_FILE_CAP + 1)])
    status, body = await _post(small_front, "/events/image.uploaded", data=form)
    assert _refused(status, body, code=413) == {"field": "files", "reason": "TooLarge"}
    assert "big.bin" in body["error"]
    assert small_front.raised == []


async def test_parts_together_over_the_request_cap_are_413(small_front: Front) -> None:
    parts: list[tuple[str, str | None, int]] = [
        (f"f{i}", f"f{i}.bin", SMALL_FILE_CAP) for i in range(5)
    ]
    form = await _streamed_form(parts)
    status, body = await _post(small_front, "/events/image.uploaded", data=form)
    assert _refused(status, body, code=413) == {"field": "body", "reason": "TooLarge"}
    assert small_front.raised == []
    # The files streamed in before the cap was crossed are deleted with the refusal.
    assert await small_front.platform.blobs.list() == []


async def test_a_json_body_over_the_request_cap_is_a_json_413(small_front: Front) -> None:
    payload = io.BytesIO(json.dumps({"k": "v" * (SMALL_REQUEST_CAP + 10)}).encode())
    status, body = await _post(
        small_front,
        "/events/image.uploaded",
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    assert _refused(status, body, code=413) == {"field": "body", "reason": "TooLarge"}


async def test_files_under_the_caps_are_uploaded(small_front: Front) -> None:
    form = await _streamed_form([("file", "ok.bin", SMALL_FILE_CAP)])
    status, body = await _post(small_front, "/events/image.uploaded", data=form)
    assert status == 201, body
    meta = await small_front.platform.meta.get_event_meta(
        body["context"]["correlationId"], body["context"]["eventId"]
    )
    assert meta.files == ["ok.bin"]
    [blob] = await small_front.platform.blobs.list(meta.files_prefix)
    assert blob.size == SMALL_FILE_CAP


async def test_a_70_mb_file_part_is_refused_by_the_default_64_mib_cap(front: Front) -> None:
    form = await _streamed_form([("file", "huge.bin", 70 * 1000 * 1000)])
    status, body = await _post(front, "/events/image.uploaded", data=form)
    assert _refused(status, body, code=413)["reason"] == "TooLarge"
    assert front.raised == []


# --- gRPC ---------------------------------------------------------------------------------------


@pytest.fixture
def events(channel: Any) -> Any:
    return events_pb2_grpc.EventServiceStub(channel)


async def _invalid(call: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    trailers = dict(err.trailing_metadata() or ())
    assert err.details()
    return str(trailers.get("ion-field", ""))


def _request(**kwargs: Any) -> Any:
    values: dict[str, Any] = {"event_type": "image.uploaded", **kwargs}
    return events_pb2.PublishEventRequest(**values)


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"correlation_id": "../x"}, "correlation_id"),
        ({"correlation_id": "a/b"}, "correlation_id"),
        ({"correlation_id": "a\\b"}, "correlation_id"),
        ({"correlation_id": "a\x00b"}, "correlation_id"),
        ({"correlation_id": "c" * 129}, "correlation_id"),
        ({"event_type": "bad type"}, "event_type"),
        ({"event_type": "t\x00"}, "event_type"),
        ({"data": [types_pb2.KeyValue(key="", value="v")]}, "data"),
        ({"data": [types_pb2.KeyValue(key="k\n", value="v")]}, "data"),
        ({"data": [types_pb2.KeyValue(key="k", value="a\x00b")]}, "data.k"),
        ({"data": [types_pb2.KeyValue(key="k", value="v" * 70_000)]}, "data.k"),
        (
            {"data": [types_pb2.KeyValue(key=f"k{i}", value="") for i in range(1001)]},
            "data",
        ),
        (
            {"data": [types_pb2.KeyValue(key=f"k{i}", value="v" * 60_000) for i in range(5)]},
            "data",
        ),
        ({"files": [events_pb2.File(name="a\x00b", content=b"x")]}, "files"),
        ({"files": [events_pb2.File(name="dir/a.txt", content=b"x")]}, "files"),
        ({"files": [events_pb2.File(name="a\\b", content=b"x")]}, "files"),
        ({"files": [events_pb2.File(name="x" * 256, content=b"x")]}, "files"),
        (
            {
                "files": [
                    events_pb2.File(name="a.txt", content=b"1"),
                    events_pb2.File(name="a.txt", content=b"2"),
                ]
            },
            "files",
        ),
    ],
)
async def test_publish_refuses_what_the_bus_would_dead_letter(
    events: Any, running: Any, request_kwargs: dict[str, Any], field: str
) -> None:
    bus = running.stub.platform.bus
    await bus.ensure_subscription("image.uploaded", "watch", SubscriptionOptions())
    assert await _invalid(events.Publish(_request(**request_kwargs), timeout=5)) == field
    assert await bus.peek("image.uploaded", "watch") == []


async def test_publish_keeps_accepting_2018_ids(events: Any) -> None:
    for correlation_id in ("dev", "Flow.2018_v-1", "A" * 128):
        reply = await events.Publish(_request(correlation_id=correlation_id), timeout=5)
        assert reply.event.correlation_id == correlation_id


async def test_lookups_refuse_unsafe_ids(channel: Any, events: Any) -> None:
    trace = trace_pb2_grpc.TraceServiceStub(channel)
    request = trace_pb2.GetFlowRequest(correlationID="../../x")
    assert await _invalid(trace.GetFlow(request, timeout=5)) == "correlationID"
    request = events_pb2.GetEventRequest(event_id="../x")
    assert await _invalid(events.Get(request, timeout=5)) == "event_id"
    request = events_pb2.GetEventRequest(event_id="e", correlation_id="a/b")
    assert await _invalid(events.Get(request, timeout=5)) == "correlation_id"
