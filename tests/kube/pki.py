"""Certificates, tokens and kubeconfigs of a throwaway test cluster, made with `cryptography`.

Everything is valid for two days and lives in the cluster's work dir; nothing is reused.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=2)


@dataclass(frozen=True)
class Pki:
    """Paths of the files `write_pki` wrote."""

    dir: Path
    ca_crt: Path
    ca_key: Path
    apiserver_crt: Path
    apiserver_key: Path
    admin_crt: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path
    tokens_csv: Path
    kcm_token: str
    scheduler_token: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _cert(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: list[x509.ObjectIdentifier] | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
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
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_pki(directory: Path, *, extra_ips: list[str]) -> Pki:
    """CA, apiserver serving cert, admin client cert (O=system:masters), SA key pair, tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("ion-kube-test-ca")
    ca = _cert(ca_name, ca_key.public_key(), ca_name, ca_key, ca=True)

    ips = ["127.0.0.1", "10.0.0.1", *extra_ips]
    sans: list[x509.GeneralName] = [
        x509.DNSName(name)
        for name in (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
    ]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    server_key = _key()
    server = _cert(
        _name("kube-apiserver"),
        server_key.public_key(),
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=sans,
    )
    admin_key = _key()
    admin = _cert(
        _name("admin", "system:masters"),
        admin_key.public_key(),
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    # Service-account tokens are signed with RS256 by default: an RSA key.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    paths = {
        "ca_crt": directory / "ca.crt",
        "ca_key": directory / "ca.key",
        "apiserver_crt": directory / "apiserver.crt",
        "apiserver_key": directory / "apiserver.key",
        "admin_crt": directory / "admin.crt",
        "admin_key": directory / "admin.key",
        "sa_key": directory / "sa.key",
        "sa_pub": directory / "sa.pub",
    }
    paths["ca_crt"].write_bytes(_pem(ca))
    _write_key(paths["ca_key"], ca_key)
    paths["apiserver_crt"].write_bytes(_pem(server) + _pem(ca))
    _write_key(paths["apiserver_key"], server_key)
    paths["admin_crt"].write_bytes(_pem(admin))
    _write_key(paths["admin_key"], admin_key)
    _write_key(paths["sa_key"], sa_key)
    paths["sa_pub"].write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    kcm_token, sched_token = secrets.token_hex(16), secrets.token_hex(16)
    tokens = directory / "tokens.csv"
    tokens.write_text(
        f"{kcm_token},system:kube-controller-manager,kcm\n"
        f"{sched_token},system:kube-scheduler,sched\n"
    )
    tokens.chmod(0o600)
    return Pki(
        dir=directory,
        tokens_csv=tokens,
        kcm_token=kcm_token,
        scheduler_token=sched_token,
        **paths,
    )


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_crt: Path,
    user: str,
    token: str | None = None,
    client_crt: Path | None = None,
    client_key: Path | None = None,
) -> Path:
    """A kubeconfig with everything embedded, so it can be copied anywhere."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    credentials: dict[str, str] = {}
    if token is not None:
        credentials["token"] = token
    if client_crt is not None and client_key is not None:
        credentials["client-certificate-data"] = b64(client_crt)
        credentials["client-key-data"] = b64(client_key)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "ion-kube",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_crt)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "ion-kube", "context": {"cluster": "ion-kube", "user": user}}],
        "current-context": "ion-kube",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path
