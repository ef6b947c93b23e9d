"""A loopback stand-in for the Azure cloud metadata and Entra ID token endpoints.

`terraform plan` with the azurerm provider configures the provider before it plans anything: it
reads the cloud's endpoints from ``https://$ARM_METADATA_HOSTNAME/metadata/endpoints`` and gets a
token from the login endpoint named there, whose claims it parses without checking the signature.
With no state to refresh, the plan then needs no Azure API call. `FakeAzureCloud` answers those two
requests over HTTPS (a self-signed certificate for 127.0.0.1, made with `cryptography`; point
``SSL_CERT_FILE`` at `cert_file`), records every request, and answers anything else 404, so a test
can both plan offline and check that nothing else was asked for.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["FAKE_IDS", "FakeAzureCloud", "RecordedRequest"]

FAKE_IDS = {
    "ARM_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "ARM_TENANT_ID": "00000000-0000-0000-0000-000000000002",
    "ARM_CLIENT_ID": "00000000-0000-0000-0000-000000000003",
}
"""The service principal the fake issues tokens for (any secret is accepted)."""
_OBJECT_ID = "00000000-0000-0000-0000-000000000004"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    """Path without the query string."""
    answered: bool
    """True for the metadata and token requests, False for anything else (answered 404)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """Write a certificate (SAN IP 127.0.0.1) and its key; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-azure")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "fake-azure.pem", directory / "fake-azure-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class _Handler(BaseHTTPRequestHandler):
    cloud: ClassVar[FakeAzureCloud]

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet; requests are recorded instead."""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = urlsplit(self.path).path
        answer = self.cloud.answer(self.command, path)
        self.cloud.record(RecordedRequest(self.command, path, answer is not None))
        if answer is None:
            self._reply(404, {"error": {"code": "NotFound", "message": f"fake: no {path}"}})
        else:
            self._reply(200, answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


@dataclass
class FakeAzureCloud:
    """The fake cloud, serving in a thread while the context is open.

    Use `environ()` for the ARM_* variables and SSL_CERT_FILE a terraform process needs.
    """

    directory: Path
    host: str = ""
    """``127.0.0.1:<port>`` once started: the value of ARM_METADATA_HOSTNAME."""
    cert_file: Path = field(default=Path())
    requests: list[RecordedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> FakeAzureCloud:
        self.cert_file, key_file = _self_signed(self.directory)
        handler = type("Handler", (_Handler,), {"cloud": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.host = f"127.0.0.1:{server.server_address[1]}"
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-azure", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>/``: resource manager, login and graph endpoints alike."""
        return f"https://{self.host}/"

    def environ(self) -> dict[str, str]:
        """Return what a terraform process needs to use this cloud with a fake principal."""
        return {
            **FAKE_IDS,
            "ARM_CLIENT_SECRET": "fake-secret",
            "ARM_METADATA_HOSTNAME": self.host,
            "SSL_CERT_FILE": str(self.cert_file),
        }

    def record(self, request: RecordedRequest) -> None:
        """Keep `request` in `requests` (thread-safe)."""
        with self._lock:
            self.requests.append(request)

    def answer(self, method: str, path: str) -> dict[str, Any] | None:
        """Return the JSON answer to a metadata or token request, None for anything else."""
        if method == "GET" and path == "/metadata/endpoints":
            return self._metadata()
        parts = path.strip("/").split("/")
        if method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
            return self._token(tenant=parts[0])
        return None

    def _metadata(self) -> dict[str, Any]:
        url = self.base_url
        return {
            "name": "FakeCloud",
            "portal": url,
            "resourceManager": url,
            "microsoftGraphResourceId": url,
            "graph": url,
            "authentication": {
                "loginEndpoint": url,
                "audiences": [url],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "suffixes": {
                "storage": "core.windows.net",
                "keyVaultDns": "vault.azure.net",
                "acrLoginServer": "azurecr.io",
                "sqlServerHostname": "database.windows.net",
            },
        }

    def _token(self, *, tenant: str) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "aud": self.base_url,
            "iss": f"{self.base_url}{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "appid": FAKE_IDS["ARM_CLIENT_ID"],
            "azp": FAKE_IDS["ARM_CLIENT_ID"],
            "oid": _OBJECT_ID,
            "sub": _OBJECT_ID,
            "tid": tenant,
            "idtyp": "app",
            "ver": "2.0",
        }
        header = {"alg": "RS256", "typ": "JWT"}
        token = (
            ".".join(_b64url(json.dumps(part).encode()) for part in (header, claims))
            + f".{_b64url(b'fake-signature')}"
        )
        return {
            "token_type": "Bearer",
            "expires_in": 3600,
            "ext_expires_in": 3600,
            "access_token": token,
        }
