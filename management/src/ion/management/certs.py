"""Certificates for mutual TLS: a local CA, a server certificate and client certificates.

`ion up` (through `ion-management up` / `ion-management certs generate`) keeps one small PKI
under Ion's home so that the management server and the CLI always speak mutual TLS, even on a
laptop. Keys are EC P-256 (fast to make, accepted by gRPC's BoringSSL); key files are 0600.
Tests use `new_ca`/`issue` directly to make rogue and expired certificates.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Names the local server certificate is valid for."""
CLIENT_COMMON_NAME = "ion-cli"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pem:
    """A certificate and its private key, PEM-encoded."""

    cert: bytes
    key: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """The three files one side of a mutual-TLS connection needs."""

    certfile: Path
    keyfile: Path
    cacertfile: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalPki:
    """The files of the local PKI in one directory."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate both sides trust."""
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (only `certs generate` reads it)."""
        return self.directory / "ca-key.pem"

    @property
    def server(self) -> TlsFiles:
        """The management server's certificate, key and CA."""
        return TlsFiles(
            certfile=self.directory / "server.pem",
            keyfile=self.directory / "server-key.pem",
            cacertfile=self.ca_cert,
        )

    @property
    def client(self) -> TlsFiles:
        """The CLI's client certificate, key and CA."""
        return TlsFiles(
            certfile=self.directory / "client.pem",
            keyfile=self.directory / "client-key.pem",
            cacertfile=self.ca_cert,
        )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_ca(
    common_name: str = "Ion local CA",
    *,
    valid_for: timedelta = timedelta(days=3650),
    now: datetime | None = None,
) -> Pem:
    """Return a new self-signed CA certificate and key."""
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pem(cert=cert.public_bytes(serialization.Encoding.PEM), key=_key_pem(key))


def issue(
    ca: Pem,
    common_name: str,
    *,
    server: bool = False,
    client: bool = False,
    hosts: Sequence[str] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Pem:
    """Return a certificate signed by `ca`, for server and/or client authentication.

    `hosts` become subjectAltNames (IP addresses as IP entries, the rest as DNS names).
    `not_before`/`not_after` default to now-5min and one year later.
    """
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key")
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    end = not_after or start + timedelta(days=365)
    key = _new_key()
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pem(cert=cert.public_bytes(serialization.Encoding.PEM), key=_key_pem(key))


def write_pem(pem: Pem, certfile: Path, keyfile: Path) -> None:
    """Write a certificate (0644) and its key (0600), creating the directory."""
    certfile.parent.mkdir(parents=True, exist_ok=True)
    certfile.write_bytes(pem.cert)
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem.key)
    os.chmod(keyfile, 0o600)


def _expires_within(path: Path, margin: timedelta) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return True
    return cert.not_valid_after_utc - margin < datetime.now(UTC)


def ensure_local_pki(
    directory: Path,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    renew_within: timedelta = timedelta(days=30),
    force: bool = False,
) -> tuple[LocalPki, list[Path]]:
    """Create the local CA and certificates where missing or about to expire.

    Returns the PKI and the files written (empty when everything was already in place). A new
    CA re-issues both leaf certificates, since the old ones no longer verify against it.
    """
    pki = LocalPki(directory=directory)
    written: list[Path] = []
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    new_root = force or not pki.ca_key.exists() or _expires_within(pki.ca_cert, renew_within)
    if new_root:
        write_pem(new_ca(), pki.ca_cert, pki.ca_key)
        written += [pki.ca_cert, pki.ca_key]
    ca = Pem(cert=pki.ca_cert.read_bytes(), key=pki.ca_key.read_bytes())
    for files, server in ((pki.server, True), (pki.client, False)):
        if new_root or not files.keyfile.exists() or _expires_within(files.certfile, renew_within):
            pem = (
                issue(ca, "ion-management", server=True, hosts=hosts)
                if server
                else issue(ca, CLIENT_COMMON_NAME, client=True)
            )
            write_pem(pem, files.certfile, files.keyfile)
            written += [files.certfile, files.keyfile]
    return pki, written
