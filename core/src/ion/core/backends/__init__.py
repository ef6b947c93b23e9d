"""Open a backend of each port from a URL, so configuration alone chooses embedded or cloud.

| port          | embedded                      | Azure                                  |
|---------------|-------------------------------|----------------------------------------|
| EventBus      | ``sqlite:///path/bus.db``     | ``servicebus://<namespace>``           |
| BlobStore     | ``file:///path/blobs``        | ``azblob://<account>/<container>``     |
| MetadataStore | ``sqlite:///path/meta.db``    | ``cosmos://<account>/<database>``      |

Cloud SDKs are imported only when their scheme is opened (they are the ``ion-core[azure]``
extra). Credentials never travel in URLs; cloud backends read them from the environment
(Service Bus: ``ION_AZURE_SERVICEBUS_CONNECTION_STRING``, else ``DefaultAzureCredential``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from ion.core import errors
from ion.core.clock import Clock, SystemClock
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.meta import MetadataStore

__all__ = ["local_path", "open_blobs", "open_bus", "open_meta"]


def local_path(url: str, *, variable: str) -> Path:
    """Return the filesystem path of a ``sqlite://`` or ``file://`` URL (``~`` expanded).

    Raises:
        errors.ConfigError: the URL has no path.
    """
    parts = urlsplit(url)
    raw = unquote(parts.netloc + parts.path) if parts.netloc in ("", "~") else unquote(parts.path)
    if parts.netloc == "~":
        raw = "~" + unquote(parts.path)
    elif raw.startswith("/~"):
        raw = raw[1:]
    if not raw:
        raise errors.ConfigError(
            f"{variable}={url!r} has no path; write it like {parts.scheme}:///home/me/.ion/x"
        )
    return Path(raw).expanduser()


def _scheme(url: str, variable: str, allowed: str) -> str:
    scheme = urlsplit(url).scheme
    if not scheme:
        raise errors.ConfigError(f"{variable}={url!r} is not a URL; use one of: {allowed}")
    return scheme


def open_bus(url: str, *, clock: Clock | None = None) -> EventBus:
    """Return the EventBus the URL names.

    Raises:
        errors.ConfigError: unknown scheme or malformed URL.
    """
    allowed = "sqlite:///path/bus.db, servicebus://<namespace>"
    scheme = _scheme(url, "ION_BUS__URL", allowed)
    if scheme == "sqlite":
        from ion.core.backends.sqlite.bus import SqliteEventBus

        return SqliteEventBus(
            local_path(url, variable="ION_BUS__URL"), clock=clock or SystemClock()
        )
    if scheme in ("servicebus", "sb"):
        from ion.core.backends.azure.servicebus import ServiceBusEventBus

        return ServiceBusEventBus.from_url(url)
    raise errors.ConfigError(f"ION_BUS__URL={url!r}: unknown scheme {scheme!r}; use {allowed}")


def open_blobs(url: str) -> BlobStore:
    """Return the BlobStore the URL names.

    Raises:
        errors.ConfigError: unknown scheme or malformed URL.
    """
    allowed = "file:///path/blobs, azblob://<account>/<container>"
    scheme = _scheme(url, "ION_BLOBS__URL", allowed)
    if scheme == "file":
        from ion.core.backends.localfs.blobs import LocalBlobStore

        return LocalBlobStore(local_path(url, variable="ION_BLOBS__URL"))
    if scheme == "azblob":
        from ion.core.backends.azure.blobs import AzureBlobStore

        return AzureBlobStore.from_url(url)
    raise errors.ConfigError(f"ION_BLOBS__URL={url!r}: unknown scheme {scheme!r}; use {allowed}")


def open_meta(url: str) -> MetadataStore:
    """Return the MetadataStore the URL names.

    Raises:
        errors.ConfigError: unknown scheme or malformed URL.
    """
    allowed = "sqlite:///path/meta.db, cosmos://<account>/<database>"
    scheme = _scheme(url, "ION_META__URL", allowed)
    if scheme == "sqlite":
        from ion.core.backends.sqlite.meta import SqliteMetadataStore

        return SqliteMetadataStore(local_path(url, variable="ION_META__URL"))
    if scheme == "cosmos":
        from ion.core.backends.azure.cosmos import CosmosMetadataStore

        return CosmosMetadataStore.from_url(url)
    raise errors.ConfigError(f"ION_META__URL={url!r}: unknown scheme {scheme!r}; use {allowed}")
