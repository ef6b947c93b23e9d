"""mTLS material as Kubernetes Secrets: what the Helm chart's pre-install hook runs.

`install_cert_secrets` makes a fresh CA, a server certificate for the given names and a client
certificate, and stores them as two `kubernetes.io/tls` Secrets that also carry `ca.crt` (the
layout cert-manager uses, so the chart mounts either the same way). The CA's key is not kept:
to re-issue, delete both Secrets and run the hook again (`helm upgrade`). Secrets that already
exist are kept, so an upgrade never rotates certificates a user has handed out.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ion.core import errors
from ion.dispatcher.executors.kubernetes import KubeApi, KubeApiError
from ion.management.certs import CLIENT_COMMON_NAME, issue, new_ca

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertSecrets:
    """What `install_cert_secrets` did."""

    server_secret: str
    client_secret: str
    created: bool
    """False: the server Secret existed and both were kept."""


def _secret(
    name: str, cert: bytes, key: bytes, ca: bytes, labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "labels": labels},
        "data": {
            "tls.crt": base64.b64encode(cert).decode(),
            "tls.key": base64.b64encode(key).decode(),
            "ca.crt": base64.b64encode(ca).decode(),
        },
    }


async def install_cert_secrets(
    api: KubeApi,
    *,
    namespace: str,
    server_secret: str,
    client_secret: str,
    hosts: Sequence[str],
    labels: dict[str, str] | None = None,
    force: bool = False,
) -> CertSecrets:
    """Create the server and client TLS Secrets unless the server one exists (`force` replaces).

    Raises:
        errors.IonError: the API server refused (the Secret and the cause named).
    """
    base = f"/api/v1/namespaces/{namespace}/secrets"
    exists = True
    try:
        await api.request("GET", f"{base}/{server_secret}")
    except KubeApiError as err:
        if err.status != 404:
            raise errors.IonError(f"cannot read Secret {namespace}/{server_secret}: {err}") from err
        exists = False
    if exists and not force:
        log.info("Secret %s/%s exists; keeping the certificates", namespace, server_secret)
        return CertSecrets(server_secret=server_secret, client_secret=client_secret, created=False)
    ca = new_ca()
    server = issue(ca, "ion-management", server=True, hosts=list(hosts))
    client = issue(ca, CLIENT_COMMON_NAME, client=True)
    for name, pem in ((client_secret, client), (server_secret, server)):
        body = _secret(name, pem.cert, pem.key, ca.cert, labels or {})
        try:
            if force:
                await api.request("DELETE", f"{base}/{name}")
        except KubeApiError as err:
            if err.status != 404:
                raise errors.IonError(f"cannot replace Secret {namespace}/{name}: {err}") from err
        try:
            await api.request("POST", base, body=body)
        except KubeApiError as err:
            raise errors.IonError(f"cannot create Secret {namespace}/{name}: {err}") from err
        log.info("created Secret %s/%s", namespace, name)
    return CertSecrets(server_secret=server_secret, client_secret=client_secret, created=True)
