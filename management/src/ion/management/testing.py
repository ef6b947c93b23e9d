"""Test helpers for the management server and its clients: a stub platform, certificates, a server.

`StubPlatform` keeps real embedded backends (SQLite bus and metadata, filesystem blobs) but
runs no dispatchers: published events stay on their subscriptions, so tests can peek them,
dead-letter them and replay them deterministically. Its flow holds the events alone, unhandled.
`make_test_certificates` makes a PKI plus a rogue and an expired client certificate, and
`serve_stub` runs a real gRPC server on 127.0.0.1:0 over a stub platform.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information

from ion.core import Event, ModuleRecord, errors
from ion.core.backends import open_blobs, open_bus, open_meta
from ion.core.config import IonSettings
from ion.core.flow import Flow, load_flow
from ion.core.ports import OutgoingMessage, SubscriptionOptions
from ion.dispatcher.pool import Draining
from ion.management.certs import (
    LocalPki,
    Pem,
    TlsFiles,
    ensure_local_pki,
    issue,
    new_ca,
    write_pem,
)
from ion.management.control import RootEvent, RootFile, raise_root_event
from ion.management.deployers import InProcessDeployer
from ion.management.registry import ModuleRegistry, subscription_of
from ion.management.server import ManagementServer, start_server


@dataclass(frozen=True, slots=True, kw_only=True)
class StubRuntime:
    """Dispatchers 'running' for a started module (no jobs ever run)."""

    dispatchers_running: int
    jobs_in_flight: int = 0


URL_LIFETIME = timedelta(days=7)


class StubPlatform:
    """Embedded backends without dispatchers; satisfies `ion.management.dataplane.Platform`."""

    def __init__(self, settings: IonSettings) -> None:
        self.settings = settings
        self.bus = open_bus(settings.bus_url)
        self.blobs = open_blobs(settings.blobs_url)
        self.meta = open_meta(settings.meta_url)
        self.started: dict[str, ModuleRecord] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bus.aclose()
        await self.blobs.aclose()
        await self.meta.aclose()

    async def start_module(self, record: ModuleRecord) -> None:
        """Create the module's subscription and note it as running."""
        topic, subscription = subscription_of(record)
        await self.bus.ensure_subscription(
            topic,
            subscription,
            SubscriptionOptions(max_delivery_count=record.spec.max_attempts),
        )
        for published in record.spec.publishes:
            await self.bus.ensure_topic(published)
        self.started[record.id] = record

    async def stop_module(
        self,
        module_id: str,
        *,
        remove_subscription: bool = True,
        grace: float | None = None,
        on_progress: Callable[[Draining], None] | None = None,
    ) -> int:
        """Forget the module; delete its subscription if asked (no job ever runs: 0 left)."""
        record = self.started.pop(module_id, None)
        if record is not None and remove_subscription:
            await self.bus.delete_subscription(*subscription_of(record))
        return 0

    async def replace_module(self, record: ModuleRecord) -> None:
        """Note the new record (the subscription stays)."""
        if record.id not in self.started:
            raise errors.NotFoundError(f"module {record.id!r} is not running")
        self.started[record.id] = record

    async def cancel_jobs(self, jobs: Sequence[tuple[str, str | None]]) -> int:
        """No job ever runs here."""
        return 0

    def module_status(self, module_id: str) -> StubRuntime:
        """All dispatchers of a started module run; none of any other."""
        record = self.started.get(module_id)
        return StubRuntime(dispatchers_running=record.spec.instance_count if record else 0)

    def root_event(self, event_type: str, *, correlation_id: str | None = None) -> RootEvent:
        """Begin a root event whose files and data arrive one by one."""
        return RootEvent(
            bus=self.bus,
            blobs=self.blobs,
            meta=self.meta,
            url_lifetime=URL_LIFETIME,
            event_type=event_type,
            correlation_id=correlation_id,
        )

    async def raise_event(
        self,
        event_type: str,
        *,
        data: Mapping[str, str] | None = None,
        files: Sequence[Path | RootFile] = (),
        correlation_id: str | None = None,
    ) -> Event:
        """Stream the files, write the eventMeta and publish a root event."""
        return await raise_root_event(
            bus=self.bus,
            blobs=self.blobs,
            meta=self.meta,
            url_lifetime=URL_LIFETIME,
            event_type=event_type,
            data=data,
            files=files,
            correlation_id=correlation_id,
        )

    async def flow(self, correlation_id: str) -> Flow:
        """Return the flow's events; no module runs here, so nothing handles them."""
        return await load_flow(self.meta, correlation_id, {})

    async def wait_settled(self, correlation_id: str, *, timeout: float) -> Flow:
        """A stub flow is settled at once: nothing will ever run."""
        return await self.flow(correlation_id)

    async def replay_dead_letter(self, module_id: str, message_id: str) -> None:
        """Move one dead-lettered message back onto the module's subscription."""
        record = self.started.get(module_id)
        if record is None:
            raise errors.NotFoundError(f"module {module_id!r} is not running")
        topic, subscription = subscription_of(record)
        held = []
        try:
            while True:
                got = await self.bus.receive_dead_letters(
                    topic, subscription, max_messages=10, max_wait=timedelta(0)
                )
                if not got:
                    break
                held.extend(got)
                for message in got:
                    if message.message_id == message_id:
                        await self.bus.publish(
                            topic,
                            [
                                OutgoingMessage(
                                    body=message.body,
                                    message_id=f"{message.message_id}-replay",
                                    to_subscription=subscription,
                                )
                            ],
                        )
                        await self.bus.complete(message)
                        held.remove(message)
                        return
        finally:
            for message in held:
                await self.bus.abandon(message)
        raise errors.NotFoundError(
            f"no dead-lettered message {message_id!r} for module {module_id!r}"
        )


def stub_settings(home: Path | None = None) -> IonSettings:
    """Return settings with every backend under `home` (a new temporary directory if None)."""
    root = home or Path(tempfile.mkdtemp(prefix="ion-test-"))
    return IonSettings(home=root)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateSet:
    """A local PKI plus a client of another CA and an expired client of the same CA."""

    pki: LocalPki
    rogue_client: TlsFiles
    expired_client: TlsFiles

    def channel_credentials(self, client: TlsFiles | None = None) -> Any:
        """Return gRPC channel credentials trusting the CA, presenting `client` (default: valid)."""
        files = client or self.pki.client
        return grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca_cert.read_bytes(),
            private_key=files.keyfile.read_bytes(),
            certificate_chain=files.certfile.read_bytes(),
        )


def make_test_certificates(directory: Path) -> CertificateSet:
    """Create the certificates tests need under `directory`."""
    pki, _ = ensure_local_pki(directory / "local")
    ca = Pem(cert=pki.ca_cert.read_bytes(), key=pki.ca_key.read_bytes())
    rogue = TlsFiles(
        certfile=directory / "rogue.pem",
        keyfile=directory / "rogue-key.pem",
        cacertfile=pki.ca_cert,
    )
    write_pem(issue(new_ca("Rogue CA"), "ion-cli", client=True), rogue.certfile, rogue.keyfile)
    expired = TlsFiles(
        certfile=directory / "expired.pem",
        keyfile=directory / "expired-key.pem",
        cacertfile=pki.ca_cert,
    )
    past = datetime.now(UTC) - timedelta(days=30)
    write_pem(
        issue(ca, "ion-cli", client=True, not_before=past, not_after=past + timedelta(days=1)),
        expired.certfile,
        expired.keyfile,
    )
    return CertificateSet(pki=pki, rogue_client=rogue, expired_client=expired)


@dataclass(slots=True, kw_only=True)
class StubServer:
    """A running management server over a stub platform."""

    server: ManagementServer
    platform: StubPlatform
    registry: ModuleRegistry

    @property
    def port(self) -> int:
        """The gRPC port."""
        return self.server.port


@asynccontextmanager
async def serve_stub(settings: IonSettings, *, tls: TlsFiles | None) -> AsyncIterator[StubServer]:
    """Run a management server on 127.0.0.1:0 over a `StubPlatform`."""
    async with StubPlatform(settings) as platform:
        registry = ModuleRegistry(
            platform.meta,
            platform.bus,
            InProcessDeployer(platform, container_runtime=settings.dispatcher.container_runtime),
            route_executors=settings.dispatcher.route_executors,
        )
        server = await start_server(platform, registry, port=0, tls=tls)
        try:
            yield StubServer(server=server, platform=platform, registry=registry)
        finally:
            await server.stop(0)
