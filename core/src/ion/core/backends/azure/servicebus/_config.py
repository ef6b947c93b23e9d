"""Settings of the Service Bus EventBus: tuning options and where credentials come from.

Credentials are read from the environment by `resolve_url` (which the backend factory reaches
through ``ServiceBusEventBus.from_url``) and never travel in URLs or in arguments that are
logged: a connection string if one is set, else Entra ID through `DefaultAzureCredential`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from ion.core import errors
from ion.core.backends.azure._trust import trusted_ca_file

ENV_CONNECTION_STRING = "ION_AZURE_SERVICEBUS_CONNECTION_STRING"
"""Connection string (SAS key) of the namespace; without it, `DefaultAzureCredential` is used."""
ENV_ADMIN_CONNECTION_STRING = "ION_AZURE_SERVICEBUS_ADMIN_CONNECTION_STRING"
"""Connection string for entity management when its endpoint differs (emulators, test fakes)."""
ENV_ADMIN_VERIFY_TLS = "ION_AZURE_SERVICEBUS_ADMIN_VERIFY_TLS"
"""``0`` skips TLS verification of the management endpoint; honoured for loopback hosts only."""

_URL_EXAMPLE = "servicebus://my-namespace"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceBusOptions:
    """Tuning of `ServiceBusEventBus`."""

    operation_timeout: timedelta = timedelta(seconds=30)
    """Bound on every SDK call (a receive adds its own wait); expiry raises `TransientError`."""
    prefetch: int = 0
    """Messages a receive link may hold beyond the current call (0-100); the SDK releases
    prefetched messages that arrive while no receive is running."""
    retries: int = 2
    """Retries the SDK itself makes before an error reaches Ion."""
    default_duplicate_window: timedelta = timedelta(minutes=10)
    """Duplicate-detection window of topics created by `ensure_topic`."""

    def __post_init__(self) -> None:
        if not 0 <= self.prefetch <= 100:
            raise errors.ConfigError(f"Service Bus prefetch={self.prefetch} is outside 0-100")
        if self.operation_timeout <= timedelta(0):
            raise errors.ConfigError("Service Bus operation_timeout must be positive, e.g. 30 s")
        if self.retries < 0:
            raise errors.ConfigError(f"Service Bus retries={self.retries} must be 0 or more")


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where a ``servicebus://`` URL points and how to authenticate (never logged)."""

    fully_qualified_namespace: str
    connection_string: str = ""
    admin_connection_string: str | None = None
    admin_verify_tls: bool | str = True
    """False (a loopback test server only), or the path of a CA bundle to trust."""

    def __repr__(self) -> str:
        return f"Target({self.fully_qualified_namespace!r})"


def resolve_url(url: str, environ: Mapping[str, str]) -> Target:
    """Parse ``servicebus://<namespace>`` and read the credential variables from `environ`.

    Raises:
        errors.ConfigError: the URL, a connection string or a variable is malformed.
    """
    parts = urlsplit(url)
    namespace = parts.netloc
    if parts.scheme not in ("servicebus", "sb") or not namespace or parts.path.strip("/"):
        raise errors.ConfigError(
            f"ION_BUS__URL={url!r} is not a Service Bus URL; write it like {_URL_EXAMPLE}"
        )
    host = namespace if "." in namespace.split(":")[0] else f"{namespace}.servicebus.windows.net"
    connection_string = environ.get(ENV_CONNECTION_STRING, "")
    if not connection_string:
        return Target(fully_qualified_namespace=host)
    endpoint = _endpoint_host(connection_string, ENV_CONNECTION_STRING)
    if endpoint not in (namespace.lower(), host.lower()):
        raise errors.ConfigError(
            f"ION_BUS__URL={url!r} names namespace {namespace!r} but"
            f" {ENV_CONNECTION_STRING} is for {endpoint!r}; make them agree"
        )
    admin = environ.get(ENV_ADMIN_CONNECTION_STRING, "") or None
    verify = environ.get(ENV_ADMIN_VERIFY_TLS, "1").strip().lower()
    if verify not in ("0", "1", "true", "false", ""):
        raise errors.ConfigError(
            f"{ENV_ADMIN_VERIFY_TLS}={verify!r}: use 1 (default) or 0 (local test server)"
        )
    verify_tls: bool | str = verify not in ("0", "false")
    if verify_tls and (ca_file := trusted_ca_file(environ)):
        verify_tls = ca_file
    admin_host = _endpoint_host(admin, ENV_ADMIN_CONNECTION_STRING) if admin else endpoint
    if verify_tls is False and not _is_loopback(admin_host):
        raise errors.ConfigError(
            f"{ENV_ADMIN_VERIFY_TLS}=0 is only honoured for a loopback endpoint, not {admin_host!r}"
        )
    return Target(
        fully_qualified_namespace=host,
        connection_string=connection_string,
        admin_connection_string=admin,
        admin_verify_tls=verify_tls,
    )


def client_kwargs(options: ServiceBusOptions) -> dict[str, Any]:
    """Keyword arguments of ``ServiceBusClient``: the SDK's own retries, kept short."""
    return {"retry_total": options.retries, "retry_backoff_factor": 0.5, "retry_backoff_max": 5}


def _endpoint_host(connection_string: str, variable: str) -> str:
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "endpoint":
            return urlsplit(value.strip()).netloc.lower()
    raise errors.ConfigError(
        f"{variable} has no Endpoint=sb://<namespace>.servicebus.windows.net/ part"
    )


def _is_loopback(netloc: str) -> bool:
    host = netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
