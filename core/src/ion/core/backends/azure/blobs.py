"""The Azure Blob Storage BlobStore: each key is a blob name in one container.

Uploads above 1 MiB are staged as blocks, `max_concurrency` in flight, each with its MD5 checked
by the service, and appear at once on Commit Block List (atomic, as the port promises); smaller
ones are a single Put Blob. Downloads fetch ranges in parallel but consume them in order, so the
file is written and hashed sequentially with at most `max_concurrency` chunks in memory; every
range is pinned to the first response's etag, so a blob replaced mid-read is re-read, never mixed.
The whole-blob MD5 is stored as Content-MD5 and compared on download, and sizes always are.
Read-only URLs are service SAS (account key) or user delegation SAS (token credential).

Small files cost more per file than per byte, so their path is kept short: one request per
blob, the HTTP session never looks at the environment per request (proxies are read from it
once, when the store is made), and the disk work of many small files shares a few thread hops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import re
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import urlsplit, urlunsplit

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import (
    BlobSasPermissions,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ExponentialRetry

from ion.core import errors
from ion.core.backends.azure import _blob_transfer as _transfer
from ion.core.backends.azure._errors import translate
from ion.core.ports.blobs import BlobInfo

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = ["AzureBlobOptions", "AzureBlobStore"]

log = logging.getLogger(__name__)

_MiB = 1024 * 1024
_CHUNK = 8 * _MiB
"""Default block and range size: on Azurite 8 MiB ranges downloaded ~1.5x faster than 4 MiB.
Memory per transfer is at most about max_concurrency x chunk_size (64 MiB by default)."""
_READ_ATTEMPTS = 3
"""Whole re-reads of a blob that was replaced while being downloaded, before giving up."""
BATCH_CONCURRENCY = 16
"""Files in flight in `put_files`/`get_files` (each with up to max_concurrency blocks)."""
_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
_URL_EXAMPLE = "azblob://mystorageaccount/ion-blobs"


class AzureBlobOptions(TypedDict, total=False):
    """Keyword options of the `AzureBlobStore` constructors."""

    max_concurrency: int
    """Blocks or ranges in flight per transfer (default 8)."""
    chunk_size: int
    """Bytes per staged block and per downloaded range (default 8 MiB, at least 64 KiB)."""
    connect_timeout: timedelta
    """Per-request connection timeout (default 20 s)."""
    read_timeout: timedelta
    """Per-request socket read timeout (default 120 s)."""
    retries: int
    """Retries of a failed request with exponential backoff (default 5)."""
    create_container: bool
    """Create the container on first write if it is missing (default True)."""


def _service_kwargs(options: AzureBlobOptions) -> dict[str, Any]:
    chunk = options.get("chunk_size", _CHUNK)
    return {
        # With the default (trust_env) the aiohttp session reads ~/.netrc and the proxy
        # variables on two worker-thread hops per request, which for a 4 KiB blob is as many
        # hops as the file's own disk work. `_env_proxies` reads the proxy variables once.
        "use_env_settings": False,
        "max_single_get_size": chunk,
        "max_chunk_get_size": chunk,
        "max_single_put_size": _transfer.SINGLE_PUT_MAX,
        "max_block_size": chunk,
        "connection_timeout": options.get("connect_timeout", timedelta(seconds=20)).total_seconds(),
        "read_timeout": options.get("read_timeout", timedelta(seconds=120)).total_seconds(),
        # Waits of about 1, 3, 5, 9, 17 s (+-1 s jitter): a minute at most over 5 retries.
        "retry_policy": ExponentialRetry(
            initial_backoff=1,
            increment_base=2,
            random_jitter_range=1,
            retry_total=options.get("retries", 5),
        ),
    }


def _env_proxies(url: str) -> dict[str, str]:
    """Return the proxies that HTTP_PROXY/HTTPS_PROXY name for `url`, none if NO_PROXY covers it.

    What aiohttp would find for each request with trust_env, looked up once per store. Proxy
    credentials go in the proxy URL (aiohttp would also have looked for them in ~/.netrc).
    """
    host = urlsplit(url).hostname
    found = {
        scheme: proxy
        for scheme, proxy in urllib.request.getproxies().items()
        if scheme in ("http", "https")
    }
    if not found or not host or urllib.request.proxy_bypass(host):
        return {}
    return found


def _new_service(
    build: Callable[..., BlobServiceClient], options: AzureBlobOptions
) -> BlobServiceClient:
    """Return `build(**kwargs)` with our options, and the environment's proxies for its URL."""
    kwargs = _service_kwargs(options)
    service = build(**kwargs)  # no connection is opened before the first request
    proxies = _env_proxies(service.url)
    return build(**kwargs, proxies=proxies) if proxies else service


def blob_name(key: str) -> str:
    """Return the blob name of a key: its '/'-separated parts, empty parts dropped.

    Raises:
        errors.ValidationError: the key is empty, has '.' or '..' parts, a backslash or NUL, or is
            longer than the 1024 characters a blob name may have.
    """
    parts = [p for p in key.split("/") if p]
    name = "/".join(parts)
    if (
        not parts
        or any(p in (".", "..") for p in parts)
        or "\\" in key
        or "\0" in key
        or len(name) > 1024
    ):
        raise errors.ValidationError(
            f"blob key {key!r} is not a plain '/'-separated relative key", field="key", rule="key"
        )
    return name


async def _each(
    items: Sequence[tuple[str, Path]], fn: Callable[[str, Path], Awaitable[BlobInfo]]
) -> list[BlobInfo]:
    """Run `fn(key, path)` per item, `BATCH_CONCURRENCY` at a time; results in item order.

    The first failure stops new transfers; the running ones are waited for (not cancelled:
    their disk work runs in threads, which a cancel would not stop), then it is raised.
    """
    results: list[BlobInfo | None] = [None] * len(items)
    failures: list[Exception] = []
    pending = iter(enumerate(items))

    async def worker() -> None:
        for index, (key, path) in pending:
            if failures:
                return
            try:
                results[index] = await fn(key, path)
            except Exception as err:
                failures.append(err)
                return

    async with asyncio.TaskGroup() as group:
        for _ in range(min(BATCH_CONCURRENCY, len(items))):
            group.create_task(worker())
    if failures:
        raise failures[0]
    return [info for info in results if info is not None]


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _hex(md5: bytes | bytearray | None) -> str:
    return bytes(md5).hex() if md5 else ""


class AzureBlobStore:
    """BlobStore on one Azure Blob Storage container (azure-storage-blob, aio).

    Build it with `from_url`, `from_connection_string` or `from_account`; it is an async
    context manager and must be closed with `aclose()`.
    """

    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        *,
        max_concurrency: int = 8,
        chunk_size: int = _CHUNK,
        create_container: bool = True,
        owned_credential: AsyncTokenCredential | None = None,
    ) -> None:
        if max_concurrency < 1 or chunk_size < 64 * 1024:
            raise errors.ConfigError(
                f"AzureBlobStore needs max_concurrency >= 1 and chunk_size >= 64 KiB,"
                f" not {max_concurrency} and {chunk_size}"
            )
        self._service = service
        self._container_name = container
        self._container = service.get_container_client(container)
        self._max_concurrency = max_concurrency
        self._chunk = chunk_size
        self._create_container = create_container
        self._container_ready = not create_container
        self._container_lock = asyncio.Lock()
        self._owned_credential = owned_credential
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_expiry: datetime | None = None
        self._disk = _transfer.DiskOffload()
        """Small files' disk work: many files per thread hop."""
        self._closed = False

    @classmethod
    def from_connection_string(
        cls, connection_string: str, container: str, **options: Unpack[AzureBlobOptions]
    ) -> AzureBlobStore:
        """Return a store authenticated by a storage connection string (Azurite, account keys).

        Raises:
            errors.ConfigError: the connection string is malformed.
        """
        try:
            service = _new_service(
                functools.partial(BlobServiceClient.from_connection_string, connection_string),
                options,
            )
        except ValueError:
            # The SDK's message may quote the string; ours must not (it holds the key).
            raise errors.ConfigError(
                "the storage connection string is malformed; it looks like"
                " 'DefaultEndpointsProtocol=https;AccountName=<a>;AccountKey=<k>;...'"
            ) from None
        return cls._wrap(service, container, options, owned_credential=None)

    @classmethod
    def from_account(
        cls,
        account_url: str,
        container: str,
        credential: AsyncTokenCredential | AzureNamedKeyCredential | AzureSasCredential | str,
        *,
        owned_credential: AsyncTokenCredential | None = None,
        **options: Unpack[AzureBlobOptions],
    ) -> AzureBlobStore:
        """Return a store on `account_url` (``https://<account>.blob.core.windows.net``).

        `owned_credential`, if given, is closed with the store.
        """
        service = _new_service(
            functools.partial(BlobServiceClient, account_url, credential=credential), options
        )
        return cls._wrap(service, container, options, owned_credential=owned_credential)

    @classmethod
    def _wrap(
        cls,
        service: BlobServiceClient,
        container: str,
        options: AzureBlobOptions,
        *,
        owned_credential: AsyncTokenCredential | None,
    ) -> AzureBlobStore:
        return cls(
            service,
            container,
            max_concurrency=options.get("max_concurrency", 8),
            chunk_size=options.get("chunk_size", _CHUNK),
            create_container=options.get("create_container", True),
            owned_credential=owned_credential,
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        credential: AsyncTokenCredential | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Unpack[AzureBlobOptions],
    ) -> AzureBlobStore:
        """Return the store of ``azblob://<account>/<container>``, credentials from the environment.

        Without `credential`: ``ION_AZURE_STORAGE_CONNECTION_STRING`` if set (Azurite, key
        auth), else `DefaultAzureCredential` on ``https://<account>.blob.core.windows.net``
        (``ION_AZURE_STORAGE_ENDPOINT`` overrides the endpoint).

        Raises:
            errors.ConfigError: the URL or the connection string is malformed.
        """
        parts = urlsplit(url)
        account, container = parts.netloc, parts.path.strip("/")
        if parts.scheme != "azblob" or not account or not container or "/" in container:
            raise errors.ConfigError(
                f"ION_BLOBS__URL={url!r} is not an Azure Blob URL; write it like {_URL_EXAMPLE}"
            )
        if not _ACCOUNT_NAME.match(account):
            raise errors.ConfigError(
                f"ION_BLOBS__URL={url!r}: {account!r} is not a storage account name"
                f" (3-24 lowercase letters and digits); e.g. {_URL_EXAMPLE}"
            )
        if not _CONTAINER_NAME.match(container):
            raise errors.ConfigError(
                f"ION_BLOBS__URL={url!r}: {container!r} is not a container name"
                f" (3-63 lowercase letters, digits and single hyphens); e.g. {_URL_EXAMPLE}"
            )
        env = os.environ if environ is None else environ
        connection_string = env.get("ION_AZURE_STORAGE_CONNECTION_STRING", "")
        if credential is None and connection_string:
            named = re.search(r"(?:^|;)\s*AccountName=([^;]+)", connection_string)
            if named and named.group(1).strip() != account:
                raise errors.ConfigError(
                    f"ION_BLOBS__URL={url!r} names account {account!r} but"
                    f" ION_AZURE_STORAGE_CONNECTION_STRING is for {named.group(1).strip()!r};"
                    " make them agree"
                )
            return cls.from_connection_string(connection_string, container, **options)
        endpoint = (
            env.get("ION_AZURE_STORAGE_ENDPOINT") or f"https://{account}.blob.core.windows.net"
        )
        owned: AsyncTokenCredential | None = None
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = owned = DefaultAzureCredential()
        return cls.from_account(endpoint, container, credential, owned_credential=owned, **options)

    def __repr__(self) -> str:
        return f"AzureBlobStore({_strip_query(self._service.url)!r}, {self._container_name!r})"

    async def __aenter__(self) -> AzureBlobStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def container(self) -> str:
        """The container's name."""
        return self._container_name

    def _blob(self, name: str) -> BlobClient:
        return self._container.get_blob_client(name)

    async def _ensure_container(self) -> None:
        if self._container_ready:
            return
        async with self._container_lock:
            if self._container_ready:
                return
            try:
                await self._container.create_container()
                log.info("created blob container %s", self._container_name)
            except ResourceExistsError:
                pass
            except AzureError as err:
                # An identity may write blobs without the right to create containers.
                if getattr(err, "status_code", None) != 403 or not await self._container.exists():
                    raise translate(err, f"creating container {self._container_name!r}") from err
            self._container_ready = True

    # -- upload ------------------------------------------------------------------------------

    async def put_file(self, key: str, source: Path) -> BlobInfo:
        """Upload a local file to `key` in parallel blocks, replacing any blob there.

        Raises:
            errors.TransientError: the file changed size while it was read, or the service
                failed after the retries.
        """
        name = blob_name(key)
        await self._ensure_container()
        handle, size, data = await self._disk.call(functools.partial(_transfer.open_source, source))
        if handle is None:
            if len(data) != size:
                raise errors.TransientError(f"{source} changed size while it was uploaded")
            return await _transfer.put_single(self._blob(name), name, data)
        try:
            whole = hashlib.md5(usedforsecurity=False)

            async def blocks() -> AsyncGenerator[tuple[bytes, bytes]]:
                while True:
                    block, md5 = await asyncio.to_thread(
                        _transfer.read_block, handle, self._chunk, whole
                    )
                    if not block:
                        return
                    yield block, md5

            return await self._put_blocks(name, blocks(), whole, expected_size=size)
        finally:
            handle.close()

    async def put_files(self, items: Sequence[tuple[str, Path]]) -> list[BlobInfo]:
        """Upload many local files, `(key, source)` each, several at once, as `put_file` does.

        Raises:
            errors.ValidationError: a key is invalid (nothing is uploaded then).
            errors.TransientError: a file changed size while read, or the service failed.
        """
        for key, _ in items:
            blob_name(key)
        return await _each(items, self.put_file)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> BlobInfo:
        """Upload a stream of chunks to `key` in parallel blocks; it appears when complete."""
        name = blob_name(key)
        await self._ensure_container()
        blocks = _transfer.rechunk(chunks, self._chunk)
        first = await anext(blocks, None)
        second = await anext(blocks, None) if first is not None else None
        if second is None and len(first or b"") <= _transfer.SINGLE_PUT_MAX:
            return await _transfer.put_single(self._blob(name), name, first or b"")
        whole = hashlib.md5(usedforsecurity=False)

        async def hashed() -> AsyncGenerator[tuple[bytes, bytes]]:
            for block in (first, second):
                if block is not None:
                    yield block, await asyncio.to_thread(_transfer.hash_block, block, whole)
            async for block in blocks:
                yield block, await asyncio.to_thread(_transfer.hash_block, block, whole)

        return await self._put_blocks(name, hashed(), whole, expected_size=None)

    async def _put_blocks(
        self,
        name: str,
        blocks: AsyncGenerator[tuple[bytes, bytes]],
        whole: Any,
        *,
        expected_size: int | None,
    ) -> BlobInfo:
        info = await _transfer.put_blocks(
            self._blob(name),
            name,
            blocks,
            whole,
            max_concurrency=self._max_concurrency,
            expected_size=expected_size,
        )
        log.debug("uploaded blob %s: %d bytes", name, info.size)
        return info

    # -- download ----------------------------------------------------------------------------

    def _chunks(self, name: str, head: _transfer.Head, first: bytes) -> AsyncGenerator[bytes]:
        return _transfer.read_chunks(
            self._blob(name),
            name,
            head,
            first,
            chunk=self._chunk,
            max_concurrency=self._max_concurrency,
        )

    async def get_file(self, key: str, destination: Path) -> BlobInfo:
        """Download `key` to a local file, written atomically; ranges are fetched in parallel.

        Raises:
            errors.NotFoundError: no blob has that key (nothing is written).
            errors.TransientError: size or MD5 did not match, or the blob kept changing.
        """
        name = blob_name(key)
        for _ in range(_READ_ATTEMPTS):
            head, first = await _transfer.open_read(self._blob(name), name, self._chunk)
            try:
                return await self._write_file(name, head, first, destination)
            except _transfer.BlobChangedError:
                log.info("blob %s was replaced while being downloaded; reading it again", name)
        raise errors.TransientError(
            f"blob {name!r} was replaced {_READ_ATTEMPTS} times while being downloaded"
        )

    async def get_files(self, items: Sequence[tuple[str, Path]]) -> list[BlobInfo]:
        """Download many blobs, `(key, destination)` each, several at once, as `get_file` does.

        Raises:
            errors.ValidationError: a key is invalid (nothing is downloaded then).
            errors.NotFoundError: a blob is missing (`key` names it; nothing is written for it).
            errors.TransientError: size or MD5 did not match, or a blob kept changing.
        """
        for key, _ in items:
            blob_name(key)

        async def one(key: str, destination: Path) -> BlobInfo:
            try:
                return await self.get_file(key, destination)
            except errors.NotFoundError as err:
                if err.key:
                    raise
                raise errors.NotFoundError(str(err), key=key) from err

        return await _each(items, one)

    async def _write_file(
        self, name: str, head: _transfer.Head, first: bytes, destination: Path
    ) -> BlobInfo:
        if len(first) == head.size:
            # The whole blob came with the first response: it is checked and saved on a thread
            # hop shared with the other small files written at the time.
            md5 = await self._disk.call(
                functools.partial(
                    _transfer.save_checked,
                    destination,
                    first,
                    lambda md5: self._check(name, head, len(first), md5),
                )
            )
            return BlobInfo(key=name, size=head.size, md5=md5.hex(), modified_at=head.modified_at)
        tmp, fd = await asyncio.to_thread(_transfer.open_temporary, destination)
        whole = hashlib.md5(usedforsecurity=False)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                chunks = self._chunks(name, head, first)
                try:
                    async for chunk in chunks:
                        await asyncio.to_thread(_transfer.write_block, out, chunk, whole)
                        written += len(chunk)
                finally:
                    await chunks.aclose()
            self._check(name, head, written, whole.digest())
            await asyncio.to_thread(os.replace, tmp, destination)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.unlink, tmp)
            raise
        log.debug("downloaded blob %s: %d bytes", name, written)
        return BlobInfo(key=name, size=written, md5=whole.hexdigest(), modified_at=head.modified_at)

    @staticmethod
    def _check(name: str, head: _transfer.Head, size: int, md5: bytes) -> None:
        if size != head.size:
            raise errors.TransientError(
                f"blob {name!r}: received {size} bytes but the blob has {head.size}"
            )
        if head.md5 and md5 != head.md5:
            raise errors.TransientError(
                f"blob {name!r}: content MD5 {md5.hex()} does not match the stored {head.md5.hex()}"
            )

    async def get_stream(
        self, key: str, *, chunk_size: int = 4 * 1024 * 1024
    ) -> AsyncIterator[bytes]:
        """Yield the blob's content in chunks of at most `chunk_size` bytes, prefetching ranges.

        Raises:
            errors.NotFoundError: on first iteration, if the blob does not exist.
            errors.TransientError: the blob was replaced while being read, or size/MD5 mismatch.
        """
        name = blob_name(key)
        head, first = await _transfer.open_read(self._blob(name), name, self._chunk)
        whole = hashlib.md5(usedforsecurity=False)
        received = 0
        chunks = self._chunks(name, head, first)
        try:
            async for data in chunks:
                await asyncio.to_thread(whole.update, data)
                received += len(data)
                for start in range(0, len(data), chunk_size):
                    yield data[start : start + chunk_size] if len(data) > chunk_size else data
        except _transfer.BlobChangedError as err:
            raise errors.TransientError(
                f"blob {name!r} was replaced while being read; read it again"
            ) from err
        finally:
            await chunks.aclose()
        self._check(name, head, received, whole.digest())

    # -- metadata ----------------------------------------------------------------------------

    async def stat(self, key: str) -> BlobInfo:
        """Return a blob's size, MD5 and time; raise NotFoundError if missing."""
        name = blob_name(key)
        try:
            props = await self._blob(name).get_blob_properties()
        except AzureError as err:
            raise translate(err, f"reading the properties of blob {name!r}") from err
        return BlobInfo(
            key=name,
            size=props.size,
            md5=_hex(props.content_settings.content_md5),
            modified_at=props.last_modified,
        )

    async def list(self, prefix: str = "") -> list[BlobInfo]:
        """Return the blobs whose keys start with `prefix`, sorted by key (empty if none)."""
        await self._ensure_container()
        found: list[BlobInfo] = []
        try:
            async for props in self._container.list_blobs(name_starts_with=prefix or None):
                found.append(
                    BlobInfo(
                        key=props.name,
                        size=props.size,
                        md5=_hex(props.content_settings.content_md5),
                        modified_at=props.last_modified,
                    )
                )
        except AzureError as err:
            raise translate(err, f"listing blobs under {prefix!r}") from err
        return sorted(found, key=lambda b: b.key)

    async def delete(self, key: str) -> None:
        """Delete a blob and its snapshots; succeeds if it is already gone."""
        name = blob_name(key)
        try:
            await self._blob(name).delete_blob(delete_snapshots="include")
        except AzureError as err:
            if getattr(err, "status_code", None) == 404:
                return
            raise translate(err, f"deleting blob {name!r}") from err

    async def url_for(self, key: str, *, expires_in: timedelta) -> str:
        """Return a read-only SAS URL of the blob, valid for `expires_in`.

        Raises:
            errors.ValidationError: `expires_in` is not positive, or longer than the 7 days a
                user delegation SAS may live.
            errors.ConfigError: the store has neither an account key nor a token credential.
        """
        if expires_in <= timedelta(0):
            raise errors.ValidationError(
                f"expires_in must be positive, not {expires_in}",
                field="expires_in",
                rule="positive",
            )
        name = blob_name(key)
        now = datetime.now(UTC)
        start = now - timedelta(minutes=5)  # tolerate clock skew between us and the service
        expiry = now + expires_in
        protocol = "https" if self._service.url.startswith("https:") else None
        credential = self._service.credential
        account_key = getattr(credential, "account_key", None)
        if account_key:
            sas = generate_blob_sas(
                self._service.account_name or "",
                self._container_name,
                name,
                account_key=account_key,
                permission=BlobSasPermissions(read=True),
                start=start,
                expiry=expiry,
                protocol=protocol,
            )
        elif hasattr(credential, "get_token"):
            delegation = await self._user_delegation_key(now, expiry)
            sas = generate_blob_sas(
                self._service.account_name or "",
                self._container_name,
                name,
                user_delegation_key=delegation,
                permission=BlobSasPermissions(read=True),
                start=start,
                expiry=expiry,
                protocol=protocol,
            )
        else:
            raise errors.ConfigError(
                "url_for needs an account key (ION_AZURE_STORAGE_CONNECTION_STRING with"
                " AccountKey) or a token credential; a SAS connection string cannot sign"
            )
        return f"{_strip_query(self._blob(name).url)}?{sas}"

    async def _user_delegation_key(self, now: datetime, expiry: datetime) -> UserDelegationKey:
        if expiry > now + timedelta(days=7):
            raise errors.ValidationError(
                "a user delegation SAS lives at most 7 days", field="expires_in", rule="max-7-days"
            )
        if (
            self._delegation_key is None
            or self._delegation_expiry is None
            or self._delegation_expiry < expiry
        ):
            key_expiry = min(now + timedelta(days=7), max(expiry, now + timedelta(days=1)))
            try:
                self._delegation_key = await self._service.get_user_delegation_key(
                    now - timedelta(minutes=5), key_expiry
                )
            except AzureError as err:
                raise translate(err, "getting a user delegation key") from err
            self._delegation_expiry = key_expiry
        return self._delegation_key

    async def aclose(self) -> None:
        """Close the HTTP sessions (and the credential the store created); idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._service.close()
        if self._owned_credential is not None:
            await self._owned_credential.close()
