"""Start and stop the Azure emulators (Azurite blob, cosmosdb-server) on free loopback ports.

Shared by core/tests/azure/conftest.py, the cross-service end-to-end tests and bench/. The
emulators are npm packages pinned in tools/emulators (installed by tools/emulators/install.sh).
Each emulator listens on port 0 and we read the port it bound from its log, so two test runs never
race for a port. Processes run in their own session and are stopped by PID: SIGTERM, then SIGKILL.
Cosmos runs behind TLS with a CA and server certificate made here with `cryptography`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "COSMOS_KEY",
    "EMULATORS_DIR",
    "INSTALL_HINT",
    "Azurite",
    "CosmosServer",
    "EmulatorError",
    "missing_emulators",
    "running_azurite",
    "running_cosmos",
    "start_azurite",
    "start_cosmos",
    "stop_process",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
EMULATORS_DIR = REPO_ROOT / "tools" / "emulators"
INSTALL_HINT = "run tools/emulators/install.sh (npm ci of the pinned emulators)"

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, from its README); not a secret.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# cosmosdb-server does not check keys; any base64 string works.
COSMOS_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)

_AZURITE_READY = re.compile(r"successfully listens on https?://[^:\s]+:(\d+)")
_COSMOS_READY = re.compile(r"cosmosdb-server listening on https://[^:\s]+:(\d+)/")


class EmulatorError(RuntimeError):
    """An emulator is not installed, did not start, or died."""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise EmulatorError("node is not on PATH; install Node.js >= 20, then " + INSTALL_HINT)
    return node


def _azurite_script() -> Path:
    return EMULATORS_DIR / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"


def _cosmos_package() -> Path:
    return EMULATORS_DIR / "node_modules" / "@vercel" / "cosmosdb-server" / "package.json"


def missing_emulators() -> str | None:
    """Return why the emulators cannot run here (naming the fix), or None if they can."""
    if shutil.which("node") is None:
        return "node is not on PATH; install Node.js >= 20, then " + INSTALL_HINT
    missing = [
        name
        for name, path in (("azurite", _azurite_script()), ("cosmosdb-server", _cosmos_package()))
        if not path.is_file()
    ]
    if missing:
        return f"{' and '.join(missing)} not installed in {EMULATORS_DIR}; {INSTALL_HINT}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Azurite:
    """A running Azurite blob service."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    @property
    def blob_endpoint(self) -> str:
        """The account's blob endpoint, e.g. ``http://127.0.0.1:41841/devstoreaccount1``."""
        return f"http://{self.host}:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """A connection string for the development account."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_endpoint};"
        )

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); idempotent."""
        stop_process(self.process)


@dataclass(frozen=True, slots=True, kw_only=True)
class CosmosServer:
    """A running cosmosdb-server behind TLS."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path
    ca_cert: Path
    """PEM of the CA that signed the server's certificate (SANs: the host, localhost, 127.0.0.1)."""
    key: str = COSMOS_KEY

    @property
    def endpoint(self) -> str:
        """The account endpoint, e.g. ``https://127.0.0.1:41234/``."""
        return f"https://{self.host}:{self.port}/"

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); idempotent."""
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    """Stop one process we started, by PID: SIGTERM, wait `grace` seconds, then SIGKILL."""
    if process.poll() is not None:
        return
    # Each emulator runs in its own session, so its process group id is its PID: this signals
    # only the emulator and any children it forked, nothing else.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=EMULATORS_DIR,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(
    process: subprocess.Popen[bytes], log: Path, pattern: re.Pattern[str], host: str, timeout: float
) -> int:
    """Return the port the process reports in its log, once that port accepts connections."""
    deadline = time.monotonic() + timeout
    port: int | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(
                f"{process.args!r} exited with {process.returncode} before it was ready;"
                f" its log {log}:\n{log.read_text(errors='replace')[-4000:]}"
            )
        if port is None:
            match = pattern.search(log.read_text(errors="replace"))
            if match:
                port = int(match.group(1))
        if port is not None:
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
                return port
        time.sleep(0.05)
    stop_process(process)
    raise EmulatorError(
        f"{process.args!r} was not ready within {timeout}s; its log {log}:\n"
        f"{log.read_text(errors='replace')[-4000:]}"
    )


def start_azurite(
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    extent_memory_limit_mb: int | None = None,
    timeout: float = 60.0,
) -> Azurite:
    """Start Azurite's blob service in memory on a free port of `host`; logs go to `workdir`.

    Raises:
        EmulatorError: not installed, or it did not come up within `timeout` seconds.
    """
    if (reason := missing_emulators()) is not None:
        raise EmulatorError(reason)
    log = workdir / "azurite.log"
    argv = [
        _node(),
        str(_azurite_script()),
        "--blobHost",
        host,
        "--blobPort",
        "0",
        "--inMemoryPersistence",
        # Without it Azurite ignores SIGTERM (it never exits); see test-infrastructure.md §1.
        "--disableTelemetry",
        # The SDK speaks a newer x-ms-version than Azurite 3.37 knows.
        "--skipApiVersionCheck",
        "--loose",
    ]
    if extent_memory_limit_mb is not None:
        argv += ["--extentMemoryLimit", str(extent_memory_limit_mb)]
    process = _spawn(argv, log)
    try:
        port = _wait_ready(process, log, _AZURITE_READY, host, timeout)
    except BaseException:
        stop_process(process)
        raise
    return Azurite(process=process, host=host, port=port, log=log)


def start_cosmos(workdir: Path, *, host: str = "127.0.0.1", timeout: float = 60.0) -> CosmosServer:
    """Start cosmosdb-server over TLS (fresh test certificates, keep-alive) on a free port.

    Raises:
        EmulatorError: not installed, or it did not come up within `timeout` seconds.
    """
    if (reason := missing_emulators()) is not None:
        raise EmulatorError(reason)
    ca_cert, cert, key = make_test_certificates(workdir / "certs", hosts=[host])
    log = workdir / "cosmos.log"
    argv = [_node(), str(EMULATORS_DIR / "cosmos-tls.js"), host, "0", str(cert), str(key)]
    process = _spawn(argv, log)
    try:
        port = _wait_ready(process, log, _COSMOS_READY, host, timeout)
    except BaseException:
        stop_process(process)
        raise
    return CosmosServer(process=process, host=host, port=port, log=log, ca_cert=ca_cert)


@contextlib.contextmanager
def running_azurite(workdir: Path, **kwargs: object) -> Iterator[Azurite]:
    """Run Azurite for the duration of a `with` block."""
    azurite = start_azurite(workdir, **kwargs)  # type: ignore[arg-type]  # forwarded options
    try:
        yield azurite
    finally:
        azurite.stop()


@contextlib.contextmanager
def running_cosmos(workdir: Path, **kwargs: object) -> Iterator[CosmosServer]:
    """Run cosmosdb-server for the duration of a `with` block."""
    server = start_cosmos(workdir, **kwargs)  # type: ignore[arg-type]  # forwarded options
    try:
        yield server
    finally:
        server.stop()


def make_test_certificates(directory: Path, *, hosts: list[str]) -> tuple[Path, Path, Path]:
    """Write a throwaway CA and a server certificate for `hosts` (plus localhost, 127.0.0.1).

    Returns:
        The paths of the CA certificate, the server certificate and the server's private key.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    validity = (now - dt.timedelta(minutes=5), now + dt.timedelta(days=2))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ion test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path
