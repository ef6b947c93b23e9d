"""Mutual TLS is required: the refusal matrix, plaintext only when asked, health and reflection."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ion.core import errors
from ion.core.config import IonSettings
from ion.management.certs import Pem, TlsFiles, issue, new_ca, write_pem
from ion.management.deployers import InProcessDeployer
from ion.management.registry import ModuleRegistry
from ion.management.server import load_tls, start_server
from ion.management.testing import CertificateSet as Certs
from ion.management.testing import StubPlatform, serve_stub
from ion.proto import module_pb2, module_pb2_grpc


async def _list(channel: Any) -> module_pb2.ModuleListResponse:
    stub = module_pb2_grpc.ModuleServiceStub(channel)
    return await stub.List(module_pb2.ModuleListRequest(), timeout=5)


async def test_client_with_a_certificate_of_the_ca_is_served(running: Any) -> None:
    async with running.channel() as channel:
        assert (await _list(channel)).names == []


async def test_ip_address_target_verifies_against_the_ip_san(running: Any) -> None:
    creds = running.certs.channel_credentials()
    async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", creds) as channel:
        assert (await _list(channel)).names == []


def _refused(code: Any) -> bool:
    return code == grpc.StatusCode.UNAVAILABLE


async def test_client_without_a_certificate_is_refused(running: Any) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=running.certs.pki.ca_cert.read_bytes())
    async with grpc.aio.secure_channel(running.target, creds) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list(channel)
    assert _refused(caught.value.code())


@pytest.mark.parametrize("which", ["rogue_client", "expired_client"])
async def test_client_certificate_of_another_ca_or_expired_is_refused(
    running: Any, which: str
) -> None:
    client: TlsFiles = getattr(running.certs, which)
    async with running.channel(client) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list(channel)
    assert _refused(caught.value.code())


async def test_client_that_does_not_trust_the_server_ca_fails(running: Any, tmp_path: Path) -> None:
    other = new_ca("Other CA")
    files = running.certs.pki.client
    creds = grpc.ssl_channel_credentials(
        root_certificates=other.cert,
        private_key=files.keyfile.read_bytes(),
        certificate_chain=files.certfile.read_bytes(),
    )
    async with grpc.aio.secure_channel(running.target, creds) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list(channel)
    assert _refused(caught.value.code())


async def test_plaintext_client_is_refused(running: Any) -> None:
    async with grpc.aio.insecure_channel(running.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list(channel)
    assert _refused(caught.value.code())


async def test_insecure_server_serves_plaintext_and_warns(
    settings: IonSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ion.management.server")
    async with (
        serve_stub(settings, tls=None) as stub,
        grpc.aio.insecure_channel(f"127.0.0.1:{stub.port}") as channel,
    ):
        assert (await _list(channel)).names == []
    assert any("WITHOUT TLS" in r.getMessage() for r in caplog.records)


async def test_health_reports_serving_for_every_service(channel: Any) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "ModuleService", "TraceService", "ion.v1.EventService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_2018_and_new_services(channel: Any) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: set[str] = set()
    async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
        names |= {s.name for s in reply.list_services_response.service}
    assert {
        "ModuleService",
        "TraceService",
        "ion.v1.EventService",
        "ion.v1.DeadLetterService",
        "grpc.health.v1.Health",
    } <= names


def test_missing_certificate_file_is_named(certs: Certs, tmp_path: Path) -> None:
    files = TlsFiles(
        certfile=tmp_path / "nope.pem",
        keyfile=certs.pki.server.keyfile,
        cacertfile=certs.pki.ca_cert,
    )
    with pytest.raises(errors.ConfigError, match=r"nope\.pem.*--certfile"):
        load_tls(files)


def test_key_of_another_certificate_is_refused(certs: Certs) -> None:
    files = TlsFiles(
        certfile=certs.pki.server.certfile,
        keyfile=certs.pki.client.keyfile,
        cacertfile=certs.pki.ca_cert,
    )
    with pytest.raises(errors.ConfigError, match="does not belong"):
        load_tls(files)


def test_expired_server_certificate_is_refused(certs: Certs, tmp_path: Path) -> None:
    ca = Pem(cert=certs.pki.ca_cert.read_bytes(), key=certs.pki.ca_key.read_bytes())
    past = datetime.now(UTC) - timedelta(days=10)
    files = TlsFiles(
        certfile=tmp_path / "old.pem",
        keyfile=tmp_path / "old-key.pem",
        cacertfile=certs.pki.ca_cert,
    )
    write_pem(
        issue(
            ca,
            "old",
            server=True,
            hosts=["localhost"],
            not_before=past,
            not_after=past + timedelta(days=1),
        ),
        files.certfile,
        files.keyfile,
    )
    with pytest.raises(errors.ConfigError, match="expired"):
        load_tls(files)


async def test_busy_port_is_a_config_error(running: Any, settings: IonSettings) -> None:
    async with StubPlatform(settings) as platform:
        registry = ModuleRegistry(platform.meta, platform.bus, InProcessDeployer(platform))
        with pytest.raises(errors.ConfigError, match="cannot listen"):
            await start_server(platform, registry, port=running.port, tls=running.certs.pki.server)
