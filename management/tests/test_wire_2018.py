"""A client that knows only the 2018 .proto field numbers, speaking raw bytes, still works.

Requests are hand-encoded protobuf (varints and length-delimited fields) and sent with gRPC's
generic unary call and identity serializers to `/ModuleService/...` and `/TraceService/GetFlow`;
responses are decoded by hand. Nothing here uses Ion's generated stubs.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def text(number: int, value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(raw)) + raw


def number(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def decode(raw: bytes) -> dict[int, list[Any]]:
    """Decode one message level: field number -> values (bytes for length-delimited, int else)."""
    fields: dict[int, list[Any]] = {}
    i = 0

    def read_varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = raw[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(raw):
        key = read_varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            fields.setdefault(field, []).append(read_varint())
        elif wire == 2:
            length = read_varint()
            fields.setdefault(field, []).append(raw[i : i + length])
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return fields


async def _unary(channel: Any, path: str, request: bytes) -> bytes:
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    reply: bytes = await call(request, timeout=5)
    return reply


async def test_a_2018_client_creates_gets_lists_deletes_and_traces(running: Any) -> None:
    create = b"".join(
        [
            text(1, "downloader"),
            text(2, "frontapi.new_link"),
            text(3, "file_downloaded"),
            text(4, "me/ion-module-downloader"),
            text(5, "dotjson/ion-handler"),
            number(6, 1),
            number(7, 1),
            number(9, 5),
            text(10, text(1, "FFMPEG_USE_GPU") + text(2, "false")),
        ]
    )
    async with running.channel() as channel:
        created = decode(await _unary(channel, "/ModuleService/Create", create))
        module_id = created[1][0].decode()
        assert module_id.startswith("downloader-")

        got = decode(await _unary(channel, "/ModuleService/Get", text(1, module_id)))
        assert got[1] == [module_id.encode()]
        assert got[2] == [b"RUNNING"]
        assert b"dispatchers running" in got[3][0]

        listed = decode(await _unary(channel, "/ModuleService/List", b""))
        assert listed[1] == [module_id.encode()]

        event = await running.stub.platform.raise_event("frontapi.new_link", data={"url": "u"})
        flow = decode(await _unary(channel, "/TraceService/GetFlow", text(1, event.correlation_id)))
        documents = json.loads(flow[1][0])
        assert documents[0]["data"] == [{"key": "url", "value": "u"}]
        assert documents[0]["context"]["parentEventId"] == "frontapi"

        # Deletes drain now: with the event still queued, a plain delete is refused with the
        # count, and Ion's force field (2) keeps the event as a dead letter.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _unary(channel, "/ModuleService/Delete", text(1, module_id))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "1 queued event(s)" in (refused.value.details() or "")
        forced = text(1, module_id) + number(2, 1)
        deleted = decode(await _unary(channel, "/ModuleService/Delete", forced))
        assert deleted[1] == [module_id.encode()]
        after = decode(await _unary(channel, "/ModuleService/List", b""))
        assert 1 not in after


async def test_a_2018_create_without_image_is_invalid_argument(running: Any) -> None:
    create = text(1, "x") + text(2, "frontapi.new_link")
    async with running.channel() as channel:
        try:
            await _unary(channel, "/ModuleService/Create", create)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "moduleimage" in (err.details() or "")
        else:
            raise AssertionError("accepted a module with neither image nor command")
