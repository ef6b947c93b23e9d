"""The front API: raise root events over HTTP(S), authenticated by token or client certificate."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from ion.core.config import IonSettings
from ion.management.front_api import start_front_api
from ion.management.testing import CertificateSet, StubPlatform

TOKEN = "s3cret-token"


@dataclass
class Front:
    url: str
    platform: StubPlatform
    certs: CertificateSet

    def ssl(self, *, client: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certs.pki.ca_cert))
        if client:
            files = self.certs.pki.client
            context.load_cert_chain(str(files.certfile), str(files.keyfile))
        return context


@pytest.fixture
async def front(settings: IonSettings, certs: CertificateSet) -> AsyncIterator[Front]:
    async with StubPlatform(settings) as platform:
        runner, port = await start_front_api(
            platform, host="127.0.0.1", port=0, tls=certs.pki.server, token=TOKEN
        )
        try:
            yield Front(url=f"https://localhost:{port}", platform=platform, certs=certs)
        finally:
            await runner.cleanup()


async def _post(front: Front, path: str, *, client_cert: bool = False, **kwargs: Any) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.post(front.url + path, ssl=front.ssl(client=client_cert), **kwargs) as response,
    ):
        return response.status, json.loads(await response.read())


async def test_healthz_needs_no_authentication(front: Front) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(front.url + "/healthz", ssl=front.ssl(client=False)) as response,
    ):
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_requests_without_token_or_certificate_are_refused(front: Front) -> None:
    status, body = await _post(front, "/events/x", json={"a": "b"})
    assert status == 401 and "Bearer" in body["error"]
    status, _ = await _post(
        front, "/events/x", json={"a": "b"}, headers={"Authorization": "Bearer wrong"}
    )
    assert status == 401


async def test_bearer_token_raises_a_root_event_with_data(front: Front) -> None:
    status, body = await _post(
        front,
        "/events/image.uploaded?correlation_id=c-1",
        json={"size": "64"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 201
    assert body["type"] == "image.uploaded"
    assert body["context"]["correlationId"] == "c-1"
    assert body["context"]["parentEventId"] == "frontapi"
    meta = await front.platform.meta.get_event_meta("c-1", body["context"]["eventId"])
    assert [(p.key, p.value) for p in meta.data] == [("size", "64")]


async def test_client_certificate_authenticates_and_multipart_uploads_files(front: Front) -> None:
    form = aiohttp.FormData()
    form.add_field("mode", "fast")
    form.add_field("file", b"\x89PNG...", filename="pic.png", content_type="image/png")
    status, body = await _post(front, "/events/image.uploaded", client_cert=True, data=form)
    assert status == 201
    meta = await front.platform.meta.get_event_meta(
        body["context"]["correlationId"], body["context"]["eventId"]
    )
    assert meta.files == ["pic.png"]
    assert ("mode", "fast") in [(p.key, p.value) for p in meta.data]
    [blob] = await front.platform.blobs.list(meta.files_prefix)
    assert blob.size == len(b"\x89PNG...")


async def test_2018_route_raises_frontapi_new_link(front: Front) -> None:
    status, body = await _post(
        front, "/", json={"url": "http://x/y.mp4"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200
    assert body["type"] == "frontapi.new_link"
    assert body["context"]["name"] == "frontapi"
    assert body["context"]["documentType"] == "eventMeta"


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/", b"not json"),
        ("/", b'{"nourl": 1}'),
        ("/events/x", b"[1, 2]"),
        ("/events/x", b'{"n": 1}'),
        ("/events/bad%20type", b"{}"),
    ],
)
async def test_bad_bodies_are_400(front: Front, path: str, payload: bytes) -> None:
    status, body = await _post(
        front, path, data=payload, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 400 and body["error"]
