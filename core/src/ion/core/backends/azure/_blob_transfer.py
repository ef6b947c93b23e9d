"""The transfer engine of AzureBlobStore: parallel block uploads and ordered parallel downloads.

Uploads stage blocks with at most `max_concurrency` in flight (a slot is taken before a block is
read, so memory stays bounded), each with its MD5 for the service to check, under block ids with
a fresh per-upload prefix, then commit them at once with the whole-blob MD5. Downloads read the
first chunk and the properties in one request, then fetch the remaining ranges ahead in a window
and hand them out in order, pinned to the first response's etag. Disk and hashing run in worker
threads; the small files' disk work goes through a `DiskOffload`, which takes every queued call
to a thread in one hop. Everything here is private to `ion.core.backends.azure.blobs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import itertools
import mimetypes
import os
import secrets
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import BlobClient

from ion.core import errors
from ion.core.backends.azure._errors import translate
from ion.core.ports.blobs import BlobInfo

SINGLE_PUT_MAX = 1024 * 1024
"""Largest upload sent as one Put Blob; aiohttp also warns about raw bodies above 1 MiB."""

T = TypeVar("T")

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_tmp_counter = itertools.count()
_TMP_TOKEN = secrets.token_hex(4)
"""Per process, so a `.part` left by a crashed process that had our pid never collides."""


class BlobChangedError(Exception):
    """The blob was replaced between two ranged reads (its etag changed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """What the first response of a download tells about the blob."""

    size: int
    etag: str
    md5: bytes
    """Stored Content-MD5, empty if the blob has none."""
    modified_at: datetime | None


def content_type(name: str) -> str:
    """Return the MIME type a blob name suggests (so SAS downloads open in a browser)."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _modified(response: Mapping[str, Any]) -> datetime | None:
    value = response.get("last_modified")
    return value if isinstance(value, datetime) else None


# -- worker-thread helpers ---------------------------------------------------------------------


def open_source(source: Path) -> tuple[IO[bytes] | None, int, bytes]:
    """Open a file to upload; a small one is read whole and closed (one thread hop)."""
    handle = source.open("rb")
    try:
        size = os.fstat(handle.fileno()).st_size
        if size > SINGLE_PUT_MAX:
            return handle, size, b""
        data = handle.read(size + 1)
    except BaseException:
        handle.close()
        raise
    handle.close()
    return None, size, data


def read_block(handle: IO[bytes], size: int, whole: Any) -> tuple[bytes, bytes]:
    """Read the next block, fold it into the whole-file MD5, and return it with its own MD5."""
    block = handle.read(size)
    whole.update(block)
    return block, hashlib.md5(block, usedforsecurity=False).digest()


def hash_block(block: bytes, whole: Any) -> bytes:
    """Fold a block into the whole-blob MD5 and return the block's own MD5."""
    whole.update(block)
    return hashlib.md5(block, usedforsecurity=False).digest()


def write_block(handle: IO[bytes], block: bytes, whole: Any) -> None:
    """Append a block to a file and fold it into the MD5."""
    handle.write(block)
    whole.update(block)


def open_temporary(destination: Path) -> tuple[str, int]:
    """Create a new hidden `.part` file beside `destination`; return its path and its fd.

    Its parents are made only when they are missing (no stat per file). The mode is 0o666 less
    the umask, as `open()` and the filesystem store give: a module running as another user can
    read its inputs.
    """
    directory, name = os.path.split(destination)
    directory = directory or "."
    for _ in range(100):
        tmp = f"{directory}/.{name[:100]}.{os.getpid()}-{_TMP_TOKEN}-{next(_tmp_counter)}.part"
        try:
            return tmp, os.open(tmp, _CREATE_FLAGS, 0o666)
        except FileExistsError:
            continue  # taken by another writer: try the next name
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
    raise FileExistsError(f"could not create a temporary file in {directory}")


def save_checked(destination: Path, data: bytes, check: Callable[[bytes], None]) -> bytes:
    """Check `data`'s MD5 with `check`, then write it to `destination` atomically.

    Written to a `.part` file beside it and renamed into place; the `.part` file is removed on
    any failure, so nothing is left at `destination` unless the whole content is there.
    """
    md5 = hashlib.md5(data, usedforsecurity=False).digest()
    check(md5)
    tmp, fd = open_temporary(destination)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return md5


class DiskOffload:
    """Runs short blocking disk calls on worker threads, several calls per hop to a thread.

    For a 4 KiB blob a hop to a thread and back costs about as much as writing the file, and
    every hop makes the event loop and the thread trade the GIL. So a runner takes every queued
    call (up to `max_share`) to its thread in one hop; 64 downloads finishing close together
    are written in a few hops. A call made while every runner is busy in its thread starts
    another runner (up to `runners`), so one slow disk call does not hold the others up. A call
    whose caller was cancelled before its turn does not run.
    """

    def __init__(self, *, runners: int = 2, max_share: int = 64) -> None:
        self._runners = runners
        self._max_share = max_share
        self._queue: deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_thread = 0
        """Runners now waiting on their thread (the others will look at the queue soon)."""

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn()` on a worker thread and return its result (or raise its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, future))
        # done() is true as soon as a runner's loop has seen an empty queue and returned.
        self._tasks = {t for t in self._tasks if not t.done()}
        if len(self._tasks) <= self._in_thread and len(self._tasks) < self._runners:
            self._tasks.add(loop.create_task(self._run()))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
            while self._queue and len(batch) < self._max_share:
                fn, future = self._queue.popleft()
                # Skip calls whose caller is gone (cancelled, or left with an earlier loop).
                if not future.done() and future.get_loop() is loop:
                    batch.append((fn, future))
            if not batch:
                continue
            self._in_thread += 1
            try:
                outcomes = await asyncio.to_thread(_call_each, [fn for fn, _ in batch])
            except BaseException as err:  # cancelled at shutdown: fail the batch, stop
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError(f"disk work interrupted: {err!r}"))
                raise
            finally:
                self._in_thread -= 1
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            # Let the callers just woken queue their next calls, so they share the next hop.
            await asyncio.sleep(0)


def _call_each(fns: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    for fn in fns:
        try:
            outcomes.append((True, fn()))
        except Exception as err:
            outcomes.append((False, err))
    return outcomes


async def rechunk(chunks: AsyncIterator[bytes], size: int) -> AsyncGenerator[bytes]:
    """Yield blocks of exactly `size` bytes (the last may be shorter) from a stream of chunks."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Return the first real failure in a task group's errors (not a sibling's cancellation)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


# -- upload ------------------------------------------------------------------------------------


async def put_single(blob: BlobClient, name: str, data: bytes) -> BlobInfo:
    """Upload a small blob in one Put Blob, with its MD5 checked by the service and stored."""
    md5 = hashlib.md5(data, usedforsecurity=False).digest()
    try:
        response = await blob.upload_blob(
            data,
            length=len(data),
            overwrite=True,
            content_settings=ContentSettings(
                content_type=content_type(name), content_md5=bytearray(md5)
            ),
            validate_content="md5",
        )
    except AzureError as err:
        raise translate(err, f"uploading blob {name!r}") from err
    return BlobInfo(key=name, size=len(data), md5=md5.hex(), modified_at=_modified(response))


async def put_blocks(
    blob: BlobClient,
    name: str,
    blocks: AsyncGenerator[tuple[bytes, bytes]],
    whole: Any,
    *,
    max_concurrency: int,
    expected_size: int | None,
) -> BlobInfo:
    """Stage `(block, block_md5)` pairs in parallel, then commit them as the blob, atomically.

    Raises:
        errors.TransientError: the source yielded other than `expected_size` bytes (nothing is
            committed), or the service failed after its retries.
    """
    # A fresh prefix per upload: concurrent writers of one key never share block ids.
    prefix = uuid.uuid4().hex
    ids: list[str] = []
    total = 0
    slots = asyncio.Semaphore(max_concurrency)

    async def stage(block_id: str, block: bytes, md5: bytes) -> None:
        try:
            # transactional_content_md5 makes the service check the block it received; a
            # BytesIO body (not bytes) keeps aiohttp from copying it on the event loop.
            await blob.stage_block(
                block_id, io.BytesIO(block), length=len(block), transactional_content_md5=md5
            )
        except AzureError as err:
            raise translate(err, f"uploading a block of blob {name!r}") from err
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as group:
            while True:
                # Take a slot before reading, so at most max_concurrency blocks are in memory.
                await slots.acquire()
                item = await anext(blocks, None)
                if item is None:
                    slots.release()
                    break
                block, md5 = item
                block_id = f"{prefix}{len(ids):08d}"
                ids.append(block_id)
                total += len(block)
                group.create_task(stage(block_id, block, md5))
    except BaseExceptionGroup as failures:
        raise _first_error(failures)  # noqa: B904  # the error keeps its own cause
    finally:
        await blocks.aclose()
    if expected_size is not None and total != expected_size:
        raise errors.TransientError(
            f"the source of blob {name!r} changed size while it was uploaded"
            f" ({expected_size} -> {total} bytes); nothing was committed"
        )
    try:
        response = await blob.commit_block_list(
            [BlobBlock(block_id=i) for i in ids],
            content_settings=ContentSettings(
                content_type=content_type(name), content_md5=bytearray(whole.digest())
            ),
        )
    except AzureError as err:
        raise translate(err, f"committing blob {name!r}") from err
    return BlobInfo(key=name, size=total, md5=whole.hexdigest(), modified_at=_modified(response))


# -- download ----------------------------------------------------------------------------------


async def open_read(blob: BlobClient, name: str, chunk: int) -> tuple[Head, bytes]:
    """Read the blob's properties and its first `chunk` bytes in one request.

    Raises:
        errors.NotFoundError: the blob does not exist.
    """
    try:
        downloader = await blob.download_blob()
        first = await downloader.read(chunk) if downloader.size else b""
    except AzureError as err:
        raise translate(err, f"reading blob {name!r}") from err
    props = downloader.properties
    head = Head(
        size=downloader.size,
        etag=props.etag,
        # On a ranged GET the SDK fills this from x-ms-blob-content-md5: the whole blob's MD5.
        md5=bytes(props.content_settings.content_md5 or b""),
        modified_at=props.last_modified,
    )
    return head, first


async def read_range(blob: BlobClient, name: str, offset: int, length: int, etag: str) -> bytes:
    """Return `length` bytes at `offset`, if the blob still has `etag`.

    Raises:
        BlobChangedError: the blob was replaced since `etag` was read.
    """
    try:
        downloader = await blob.download_blob(
            offset=offset, length=length, etag=etag, match_condition=MatchConditions.IfNotModified
        )
        data = await downloader.readall()
    except ResourceModifiedError as err:
        raise BlobChangedError(name) from err
    except AzureError as err:
        raise translate(err, f"reading blob {name!r}") from err
    if len(data) != length:
        raise errors.TransientError(
            f"reading blob {name!r}: got {len(data)} bytes at offset {offset}, expected {length}"
        )
    return data


async def read_chunks(
    blob: BlobClient, name: str, head: Head, first: bytes, *, chunk: int, max_concurrency: int
) -> AsyncGenerator[bytes]:
    """Yield the blob's content in order, fetching up to `max_concurrency` ranges ahead."""
    yield first
    offsets = iter(range(len(first), head.size, chunk))
    window: deque[asyncio.Task[bytes]] = deque()

    def schedule() -> None:
        offset = next(offsets, None)
        if offset is not None:
            length = min(chunk, head.size - offset)
            window.append(asyncio.ensure_future(read_range(blob, name, offset, length, head.etag)))

    try:
        for _ in range(max_concurrency):
            schedule()
        while window:
            data = await window.popleft()
            schedule()
            yield data
    finally:
        for task in window:
            task.cancel()
        if window:
            await asyncio.gather(*window, return_exceptions=True)
