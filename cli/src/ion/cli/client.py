"""A typed async client of the management API, with errors a person can act on.

The CLI reaches the management server only through `ion.proto` stubs over gRPC. Certificates
are checked before connecting (missing, not PEM, expired, key of another certificate), so a bad
file is named; transport failures are translated into one line saying what to do next: start
the server, fix --endpoint, or which certificate the server refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ion.cli.config import Connection
from ion.cli.errors import CliError
from ion.proto import module_pb2, module_pb2_grpc, trace_pb2, trace_pb2_grpc
from ion.proto.v1 import events_pb2, events_pb2_grpc, types_pb2

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 60.0
"""How long the server waits for a deleted module's running jobs unless told otherwise."""
T = TypeVar("T")

START_HINT = "start it with `ion up` (or point --endpoint / ION_ENDPOINT at a running server)"
CERT_HINT = (
    "use the files `ion up` wrote under ~/.ion/certs, or make new ones with `ion certs generate`"
)


@dataclass(frozen=True, slots=True)
class ClientTls:
    """The PEM bytes of the client's certificate, key and CA."""

    cert: bytes
    key: bytes
    ca: bytes


def _read(conn: Connection, key: str, path: Path | None) -> bytes:
    if path is None:
        raise CliError(f"no {key} configured")
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise CliError(
            f"{key} {path} does not exist (from {conn.source(key)}); {CERT_HINT}"
        ) from err
    except OSError as err:
        raise CliError(f"{key} {path} cannot be read (from {conn.source(key)}): {err}") from err


def load_client_tls(conn: Connection) -> ClientTls:
    """Read and check the client certificate, key and CA named by `conn`.

    Raises:
        CliError: a file is missing, not PEM, expired, or the key is not the certificate's.
    """
    missing = [k for k in ("certfile", "keyfile", "cacertfile") if getattr(conn, k) is None]
    if missing:
        given = [k for k in ("certfile", "keyfile", "cacertfile") if k not in missing]
        if not given:
            raise CliError(
                "no client certificate configured: run `ion up` (it writes ~/.ion/cli.yaml),"
                " or pass --certfile, --keyfile and --cacertfile (or --insecure for a plaintext"
                " server)"
            )
        raise CliError(
            f"mutual TLS needs --{', --'.join(missing)} as well (given: --{', --'.join(given)})"
        )
    cert_pem = _read(conn, "certfile", conn.certfile)
    key_pem = _read(conn, "keyfile", conn.keyfile)
    ca_pem = _read(conn, "cacertfile", conn.cacertfile)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as err:
        raise CliError(f"certfile {conn.certfile} is not a PEM certificate; {CERT_HINT}") from err
    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError as err:
        raise CliError(f"cacertfile {conn.cacertfile} is not a PEM certificate") from err
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise CliError(
            f"keyfile {conn.keyfile} is not an unencrypted PEM private key; {CERT_HINT}"
        ) from err
    if cert.not_valid_after_utc < datetime.now(UTC):
        raise CliError(
            f"client certificate {conn.certfile} expired on {cert.not_valid_after_utc:%Y-%m-%d};"
            f" {CERT_HINT}"
        )
    pub = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*pub) != cert.public_key().public_bytes(*pub):
        raise CliError(f"keyfile {conn.keyfile} is not the key of certfile {conn.certfile}")
    return ClientTls(cert=cert_pem, key=key_pem, ca=ca_pem)


def explain(conn: Connection, err: Any) -> CliError:
    """Translate a failed RPC into one actionable line."""
    code = err.code()
    details = str(err.details() or "")
    where = conn.endpoint
    if code == grpc.StatusCode.UNAVAILABLE:
        if "Connection refused" in details or "connect to remote host" in details:
            return CliError(f"cannot reach the management server at {where}; {START_HINT}")
        if "resolving" in details or "Domain name not found" in details:
            return CliError(f"cannot resolve the host of --endpoint {where}; check the name")
        if "WRONG_VERSION_NUMBER" in details:
            return CliError(
                f"the server at {where} does not speak TLS; if it was started with --insecure,"
                " pass --insecure (or ION_INSECURE=true)"
            )
        if "Hostname Verification" in details:
            name = conn.tls_server_name or where.rsplit(":", 1)[0]
            return CliError(
                f"the server certificate of {where} is not valid for the name {name!r}; connect"
                " by a name it carries, or pass --tls-server-name NAME (ION_TLS_SERVER_NAME)"
                " with one of them (e.g. through a port-forward)"
            )
        if "CERTIFICATE_VERIFY_FAILED" in details or "peer certificate" in details.lower():
            return CliError(
                f"the server certificate of {where} does not verify against cacertfile"
                f" {conn.cacertfile} (from {conn.source('cacertfile')}); use the CA that signed"
                " the server's certificate (~/.ion/certs/ca.pem for `ion up`)"
            )
        if "Socket closed" in details or "handshake" in details.lower():
            if conn.insecure:
                return CliError(
                    f"the server at {where} requires mutual TLS; drop --insecure and configure"
                    " --certfile/--keyfile/--cacertfile (`ion up` writes ~/.ion/cli.yaml)"
                )
            return CliError(
                f"the server at {where} refused the client certificate {conn.certfile}"
                f" (from {conn.source('certfile')}): it is not signed by the server's CA;"
                f" {CERT_HINT}"
            )
        return CliError(f"management server at {where} unavailable: {details}; {START_HINT}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CliError(
            f"no answer from {where} within {conn.timeout:g}s; raise --timeout or check the server"
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return CliError(
            f"the server at {where} does not implement this call ({details}); it may be an older"
            " management server"
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return CliError(f"invalid request: {details}")
    return CliError(details or str(code))


class IonClient:
    """The management API: modules, flows, events and dead letters."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._channel: Any = None

    async def __aenter__(self) -> Self:
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if self.conn.insecure:
            self._channel = grpc.aio.insecure_channel(self.conn.endpoint, options=options)
        else:
            tls = load_client_tls(self.conn)
            if self.conn.tls_server_name:
                options.append(("grpc.ssl_target_name_override", self.conn.tls_server_name))
            creds = grpc.ssl_channel_credentials(
                root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
            )
            self._channel = grpc.aio.secure_channel(self.conn.endpoint, creds, options=options)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def _call(
        self, method: Callable[..., Awaitable[T]], request: Any, *, extra: float = 0
    ) -> T:
        try:
            return await method(request, timeout=self.conn.timeout + extra)
        except grpc.aio.AioRpcError as err:
            raise explain(self.conn, err) from err

    @property
    def _modules(self) -> Any:
        return module_pb2_grpc.ModuleServiceStub(self._channel)

    @property
    def _events(self) -> Any:
        return events_pb2_grpc.EventServiceStub(self._channel)

    @property
    def _dead_letters(self) -> Any:
        return events_pb2_grpc.DeadLetterServiceStub(self._channel)

    async def create_module(
        self, request: module_pb2.ModuleCreateRequest
    ) -> module_pb2.ModuleCreateResponse:
        """Create a module; return its id in `.name`."""
        return await self._call(self._modules.Create, request)

    async def delete_module(
        self, name: str, *, force: bool = False, timeout: float = 0.0, dry_run: bool = False
    ) -> module_pb2.ModuleDeleteResponse:
        """Delete a module by id (or unique name); it drains first (see `delete_module_stream`)."""
        request = module_pb2.ModuleDeleteRequest(
            name=name, force=force, timeout_seconds=timeout, dry_run=dry_run
        )
        return await self._call(self._modules.Delete, request, extra=timeout or DRAIN_SECONDS)

    async def delete_module_stream(
        self,
        name: str,
        *,
        force: bool = False,
        timeout: float = 0.0,
        on_progress: Callable[[str], None] | None = None,
    ) -> module_pb2.ModuleDeleteResponse:
        """Delete a module, calling `on_progress` with each line the server sends while the
        module's running jobs drain; return the final reply (its counts and summary).

        Raises:
            CliError: the server refused (events queued, jobs still running at the timeout)
                or could not be reached.
        """
        request = module_pb2.ModuleDeleteRequest(name=name, force=force, timeout_seconds=timeout)
        call = self._modules.DeleteStream(
            request, timeout=self.conn.timeout + (timeout or DRAIN_SECONDS)
        )
        try:
            async for message in call:
                reply: module_pb2.ModuleDeleteResponse = message
                if reply.done:
                    return reply
                if on_progress is not None:
                    on_progress(reply.message)
        except grpc.aio.AioRpcError as err:
            raise explain(self.conn, err) from err
        raise CliError(f"the server ended the delete of {name} without an answer; retry")

    async def apply_module(
        self, request: module_pb2.ModuleCreateRequest, *, dry_run: bool = False
    ) -> module_pb2.ModuleApplyResponse:
        """Create the module or update the live one of its name in place; say which."""
        return await self._call(
            self._modules.Apply, module_pb2.ModuleApplyRequest(module=request, dry_run=dry_run)
        )

    async def get_module(self, name: str) -> module_pb2.ModuleGetResponse:
        """Return a module's status and counts."""
        return await self._call(self._modules.Get, module_pb2.ModuleGetRequest(name=name))

    async def list_modules(self, *, include_deleted: bool = False) -> module_pb2.ModuleListResponse:
        """Return the modules."""
        return await self._call(
            self._modules.List, module_pb2.ModuleListRequest(include_deleted=include_deleted)
        )

    async def list_flows(self, request: trace_pb2.ListFlowsRequest) -> trace_pb2.ListFlowsResponse:
        """Return one page of flows, newest first (`next_cursor` continues)."""
        stub = trace_pb2_grpc.TraceServiceStub(self._channel)
        return await self._call(stub.ListFlows, request)

    async def cancel_flow(self, correlation_id: str) -> trace_pb2.CancelFlowResponse:
        """Cancel a flow (by its id or a unique prefix): its jobs stop, nothing more runs."""
        stub = trace_pb2_grpc.TraceServiceStub(self._channel)
        request = trace_pb2.CancelFlowRequest(correlation_id=correlation_id)
        return await self._call(stub.CancelFlow, request)

    async def get_log(
        self, ref: str, *, module: str = "", offset: int = 0
    ) -> trace_pb2.GetLogResponse:
        """Return the logs of the attempts `ref` names (an attempt or a flow, or a prefix)."""
        stub = trace_pb2_grpc.TraceServiceStub(self._channel)
        request = trace_pb2.GetLogRequest(id=ref, module=module, offset=offset)
        return await self._call(stub.GetLog, request)

    async def get_flow(self, correlation_id: str, *, wait: float = 0) -> trace_pb2.GetFlowResponse:
        """Return a flow's documents and tree, waiting up to `wait` seconds for it to settle."""
        stub = trace_pb2_grpc.TraceServiceStub(self._channel)
        request = trace_pb2.GetFlowRequest(correlationID=correlation_id, wait_seconds=wait)
        return await self._call(stub.GetFlow, request, extra=wait)

    async def publish(
        self,
        event_type: str,
        *,
        data: Sequence[tuple[str, str]] = (),
        files: Sequence[tuple[str, bytes]] = (),
        correlation_id: str = "",
    ) -> events_pb2.PublishEventResponse:
        """Raise a root event with data and files."""
        request = events_pb2.PublishEventRequest(
            event_type=event_type,
            data=[types_pb2.KeyValue(key=k, value=v) for k, v in data],
            files=[events_pb2.File(name=n, content=c) for n, c in files],
            correlation_id=correlation_id,
        )
        return await self._call(self._events.Publish, request)

    async def get_event(
        self, event_id: str, *, correlation_id: str = ""
    ) -> events_pb2.GetEventResponse:
        """Return an event and its metadata."""
        request = events_pb2.GetEventRequest(event_id=event_id, correlation_id=correlation_id)
        return await self._call(self._events.Get, request)

    async def peek(self, request: events_pb2.PeekRequest) -> events_pb2.PeekResponse:
        """Return messages waiting on a subscription."""
        return await self._call(self._events.Peek, request)

    async def list_dead_letters(
        self, *, module: str = "", max_messages: int = 0
    ) -> events_pb2.ListDeadLettersResponse:
        """Return dead-lettered messages with their reasons."""
        request = events_pb2.ListDeadLettersRequest(module=module, max_messages=max_messages)
        return await self._call(self._dead_letters.List, request)

    async def replay_dead_letter(
        self, *, module: str, message_id: str
    ) -> events_pb2.ReplayDeadLetterResponse:
        """Put a dead-lettered message back on its module's subscription."""
        request = events_pb2.ReplayDeadLetterRequest(module=module, message_id=message_id)
        return await self._call(self._dead_letters.Replay, request)
