"""The management gRPC server: mutual TLS by default, health checking and reflection.

A client must present a certificate signed by the configured CA (`require_client_auth`), so no
certificate, a certificate from another CA or an expired one fails the handshake. Plaintext is
served only when the caller asks for it explicitly, and then with a warning. The certificate
files are checked before gRPC sees them, so a wrong file is reported by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import (  # type: ignore[import-untyped]  # no type information
    health,
    health_pb2,
    health_pb2_grpc,
)
from grpc_reflection.v1alpha import (  # type: ignore[import-untyped]  # no type information
    reflection,
)

from ion.core import errors
from ion.management.certs import TlsFiles
from ion.management.dataplane import Platform
from ion.management.flows import TraceService
from ion.management.registry import ModuleRegistry
from ion.management.rpc_telemetry import TelemetryInterceptor
from ion.management.services import DeadLetterService, EventService, ModuleService
from ion.proto import module_pb2, module_pb2_grpc, trace_pb2, trace_pb2_grpc
from ion.proto.v1 import events_pb2, events_pb2_grpc

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest request or response (event files travel inside PublishEventRequest)."""

SERVICE_NAMES = (
    module_pb2.DESCRIPTOR.services_by_name["ModuleService"].full_name,
    trace_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["DeadLetterService"].full_name,
)
"""Full names of Ion's services: `ModuleService`, `TraceService`, `ion.v1.EventService` ..."""


def _read(path: Path, what: str, flag: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except FileNotFoundError as err:
        raise errors.ConfigError(
            f"{what} {str(path)!r} does not exist ({flag}); run `ion up` or"
            " `ion-management certs generate` to create certificates"
        ) from err
    except OSError as err:
        raise errors.ConfigError(f"{what} {str(path)!r} cannot be read ({flag}): {err}") from err


def load_tls(files: TlsFiles) -> tuple[bytes, bytes, bytes]:
    """Read and check the server's certificate, key and CA; return (cert, key, ca) PEM.

    Raises:
        errors.ConfigError: a file is missing, not PEM, expired, or the key does not match.
    """
    cert_pem = _read(files.certfile, "certificate file", "--certfile")
    key_pem = _read(files.keyfile, "key file", "--keyfile")
    ca_pem = _read(files.cacertfile, "CA certificate file", "--cacertfile")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as err:
        raise errors.ConfigError(
            f"certificate file {str(files.certfile)!r} is not a PEM certificate"
        ) from err
    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError as err:
        raise errors.ConfigError(
            f"CA certificate file {str(files.cacertfile)!r} is not a PEM certificate"
        ) from err
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise errors.ConfigError(
            f"key file {str(files.keyfile)!r} is not an unencrypted PEM private key"
        ) from err
    if cert.not_valid_after_utc < datetime.now(UTC):
        raise errors.ConfigError(
            f"certificate file {str(files.certfile)!r} expired on"
            f" {cert.not_valid_after_utc:%Y-%m-%d}; regenerate it (`ion certs generate`)"
        )
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.PEM
    if key.public_key().public_bytes(encoding, public) != cert.public_key().public_bytes(
        encoding, public
    ):
        raise errors.ConfigError(
            f"key file {str(files.keyfile)!r} does not belong to certificate"
            f" {str(files.certfile)!r}"
        )
    return cert_pem, key_pem, ca_pem


@dataclass(slots=True)
class ManagementServer:
    """A started gRPC server and the port it listens on."""

    server: Any
    port: int
    health: Any

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, let calls in flight finish within `grace` seconds, then stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    platform: Platform,
    registry: ModuleRegistry,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: TlsFiles | None,
) -> ManagementServer:
    """Build, bind and start the management server; `tls=None` serves plaintext (warned).

    Raises:
        errors.ConfigError: a certificate file is wrong, or the address cannot be bound.
    """
    server = grpc.aio.server(
        interceptors=[TelemetryInterceptor()],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # A second server on a busy port must fail, not share it silently.
            ("grpc.so_reuseport", 0),
        ],
    )
    module_pb2_grpc.add_ModuleServiceServicer_to_server(ModuleService(registry), server)
    trace_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(platform), server)
    events_pb2_grpc.add_EventServiceServicer_to_server(EventService(platform, registry), server)
    events_pb2_grpc.add_DeadLetterServiceServicer_to_server(
        DeadLetterService(platform, registry), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if tls is None:
            log.warning(
                "serving the management API WITHOUT TLS on %s (--insecure): anyone who can"
                " reach the port can create modules and read flows",
                address,
            )
            bound = server.add_insecure_port(address)
        else:
            cert, key, ca = load_tls(tls)
            credentials = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=ca, require_client_auth=True
            )
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as err:
        raise errors.ConfigError(
            f"cannot listen on {address}: {err}; is another server using the port?"
            " Pick another with --port or ION_MANAGEMENT__PORT"
        ) from err
    if not bound:
        raise errors.ConfigError(
            f"cannot listen on {address}; is another server using the port?"
            " Pick another with --port or ION_MANAGEMENT__PORT"
        )
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("management API on %s (%s)", f"{host}:{bound}", "plaintext" if tls is None else "mTLS")
    return ManagementServer(server=server, port=int(bound), health=health_servicer)
