"""The embedded BlobStore: blobs are files under a root directory, written atomically.

A write goes to a temporary file beside its target and is renamed into place, so a reader sees
the old blob or the new one. Copies stream in chunks (and use the kernel's copy where it can),
so a large file is never held in memory. A full disk, a read-only file system or an I/O error
raises `errors.TransientError` naming the path (see `disk.py`); a half-written temporary file is
removed, so nothing is left taking space and the same call succeeds once space returns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import functools
import hashlib
import itertools
import os
import secrets
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from ion.core import errors
from ion.core.backends.localfs.disk import disk_errors
from ion.core.ports.blobs import BlobInfo

T = TypeVar("T")

_CHUNK = 1024 * 1024
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_tmp_counter = itertools.count()
_TMP_TOKEN = secrets.token_hex(4)
"""Per process, so a `.part` left by a crashed process that had our pid never collides."""


def _key_parts(key: str) -> list[str]:
    """The key's path segments; raise ValidationError if it is empty or would leave the root."""
    parts = [p for p in key.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or "\\" in key or "\0" in key:
        raise errors.ValidationError(
            f"blob key {key!r} is not a plain '/'-separated relative key",
            field="key",
            rule="key",
        )
    return parts


def _copy_fd(src: int, dst: int, size: int, copied: int = 0) -> None:
    """Copy `size` bytes from `src` to `dst` in the kernel where it can (as `cp` does).

    `copy_file_range` (in-kernel, no user-space buffer), else `sendfile`, else a read/write
    loop of 1 MiB chunks; a method that fails or stops short is taken over by the next one
    from where it stopped. `size` is the source's size when opened (a 4 KiB file is copied
    with a single call). `copied` bytes are already copied (both offsets are past them).
    """
    with contextlib.suppress(OSError):
        while copied < size and (n := os.copy_file_range(src, dst, size - copied)):
            copied += n
    if copied >= size:
        return
    os.lseek(src, copied, os.SEEK_SET)
    os.lseek(dst, copied, os.SEEK_SET)
    with contextlib.suppress(OSError):
        while copied < size and (n := os.sendfile(dst, src, None, size - copied)):
            copied += n
    if copied >= size:
        return
    os.lseek(src, copied, os.SEEK_SET)
    os.lseek(dst, copied, os.SEEK_SET)
    while chunk := os.read(src, _CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]


class _Offload:
    """Runs blocking calls on worker threads, several calls per hop to a thread.

    A hop from the event loop to a thread and back costs about as much as copying a 4 KiB
    file, and threads copying small files at once mostly fight over the GIL. So a runner takes
    every queued call (up to `max_share`) to its thread in one hop: a prepare of 10,000 files,
    which queues 16 at a time, runs on one thread, 16 files per hop. A call made while every
    runner is busy in its thread starts another runner (up to `runners`), so one long copy
    does not hold up other jobs' small ones. A call whose caller was cancelled before its
    turn does not run.
    """

    def __init__(self, *, runners: int = 4, max_share: int = 64) -> None:
        self._runners = runners
        self._max_share = max_share
        self._queue: collections.deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = (
            collections.deque()
        )
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
        while self._queue:
            batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
            while self._queue and len(batch) < self._max_share:
                fn, future = self._queue.popleft()
                if not future.done():  # skip calls whose caller is gone
                    batch.append((fn, future))
            if not batch:
                continue
            self._in_thread += 1
            try:
                outcomes = await asyncio.to_thread(_call_each, [fn for fn, _ in batch])
            except BaseException as err:  # cancelled at shutdown: fail the batch, stop
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError(f"blob transfer interrupted: {err!r}"))
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


_BATCH_CHUNK = 128
"""Files per share of a batch: a worker thread takes this many at a time from the queue."""
_BATCH_THREADS = 2
"""Worker threads per batch. A small file costs ~20 us of Python (GIL held) but far more in the
kernel creating its inode (GIL released), so two threads keep both cores of the development
machine busy; four were no faster there (docs/benchmarks.md)."""


@dataclasses.dataclass(slots=True)
class _Batch:
    """One `put_files`/`get_files` call as its worker threads share it."""

    pairs: list[tuple[str, str]]
    """(source, target) paths as strings, in item order."""
    shares: collections.deque[range]
    """Index ranges not yet taken by a thread."""
    results: list[tuple[int, float]]
    """(size, mtime) per item: of the source on a get, of the new blob on a put."""
    get: bool
    errors: list[tuple[int, BaseException]] = dataclasses.field(default_factory=list)
    stop: bool = False
    """Set on the first error (or a cancelled caller): threads take no new file."""
    made: set[str] = dataclasses.field(default_factory=set)
    """Target directories made (or found) by this batch."""


def _run_batch(batch: _Batch, from_back: bool) -> None:
    """A worker thread's loop: copy share after share until the queue is empty or stopped.

    Items usually come sorted by directory, so a thread taking shares `from_back` mostly
    creates files in other directories than one taking them from the front: they do not wait
    for the same directory's lock in the kernel.
    """
    pairs, results, made = batch.pairs, batch.results, batch.made
    pid_token = f"{os.getpid()}-{_TMP_TOKEN}"
    take = batch.shares.pop if from_back else batch.shares.popleft
    while not batch.stop:
        try:
            share = take()
        except IndexError:
            return
        for index in share:
            if batch.stop:
                return
            source, target = pairs[index]
            try:
                results[index] = _copy_one(source, target, made, pid_token, stat_source=batch.get)
            except BaseException as err:
                batch.errors.append((index, err))
                batch.stop = True
                return


def _copy_one(
    source: str, target: str, made: set[str], pid_token: str, *, stat_source: bool
) -> tuple[int, float]:
    """Copy one file through a temporary file renamed into place; return (size, mtime).

    The stat is the source's if `stat_source`, else the copy's. The per-file path of a batch:
    str paths and os calls only (about nine syscalls for a small file, no pathlib).
    """
    src_fd = os.open(source, _READ_FLAGS)
    try:
        src_stat = os.fstat(src_fd)
        if stat.S_ISDIR(src_stat.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", source)
        directory, _, name = target.rpartition("/")
        if directory not in made:
            os.makedirs(directory, exist_ok=True)
            made.add(directory)
        tmp = f"{directory}/.{name}.{pid_token}-{next(_tmp_counter)}.part"
        try:
            dst_fd = os.open(tmp, _CREATE_FLAGS, 0o666)
        except FileExistsError:  # a stale or concurrent name: take the slow, careful way
            tmp, dst_fd = _open_temporary(directory, name)
        try:
            try:
                size = src_stat.st_size
                copied = 0
                if size:
                    with contextlib.suppress(OSError):
                        copied = os.copy_file_range(src_fd, dst_fd, size)
                    if copied < size:
                        _copy_fd(src_fd, dst_fd, size, copied)
                st = src_stat if stat_source else os.fstat(dst_fd)
            finally:
                os.close(dst_fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return st.st_size, st.st_mtime
    finally:
        os.close(src_fd)


def _open_temporary(directory: str, name: str) -> tuple[str, int]:
    """Create a new hidden `.part` file beside the target; return its path and fd."""
    for _ in range(100):
        tmp = f"{directory}/.{name}.{os.getpid()}-{_TMP_TOKEN}-{next(_tmp_counter)}.part"
        try:
            return tmp, os.open(tmp, _CREATE_FLAGS, 0o666)
        except FileExistsError:
            continue  # taken by another writer: try the next name
    raise FileExistsError(f"could not create a temporary file in {directory}")


class LocalBlobStore:
    """BlobStore on a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self._root_uri = self.root.as_uri()
        self._root_str = str(self.root)
        self._dirs: set[str] = set()
        """Directories known to exist (saves a mkdir per file)."""
        self._offload = _Offload()

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    async def __aenter__(self) -> LocalBlobStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def path_of(self, key: str) -> Path:
        """Return the file that holds `key`.

        Raises:
            errors.ValidationError: the key is empty or would leave the root.
        """
        return self.root.joinpath(*_key_parts(key))

    def _info(self, key: str, path: Path) -> BlobInfo:
        st = path.stat()
        return BlobInfo(
            key=key, size=st.st_size, modified_at=datetime.fromtimestamp(st.st_mtime, UTC)
        )

    def _ensure_dir(self, directory: str) -> None:
        if directory not in self._dirs:
            os.makedirs(directory, exist_ok=True)
            self._dirs.add(directory)

    def _open_temporary(self, directory: str, name: str) -> tuple[str, int]:
        """Create a new hidden `.part` file beside the target; return its path and fd."""
        for _ in range(100):
            tmp = f"{directory}/.{name}.{os.getpid()}-{_TMP_TOKEN}-{next(_tmp_counter)}.part"
            try:
                return tmp, os.open(tmp, _CREATE_FLAGS, 0o666)
            except FileExistsError:
                continue  # taken by another writer: try the next name
            except FileNotFoundError:
                self._dirs.discard(directory)  # removed behind our back: make it again
                self._ensure_dir(directory)
        raise FileExistsError(f"could not create a temporary file in {directory}")

    def _copy_atomically(self, source: Path, target: Path) -> tuple[os.stat_result, os.stat_result]:
        """Copy `source` to `target` through a temporary file renamed into place.

        Returns the stat of the source and of the copy. Raises FileNotFoundError or IsADirectoryError (naming the
        source) if the source is not a file; nothing is created then.
        """
        src_fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            src_stat = os.fstat(src_fd)
            if stat.S_ISDIR(src_stat.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(source))
            directory, name = os.path.split(target)
            self._ensure_dir(directory)
            tmp, dst_fd = self._open_temporary(directory, name)
            try:
                try:
                    _copy_fd(src_fd, dst_fd, src_stat.st_size)
                    dst_stat = os.fstat(dst_fd)
                finally:
                    os.close(dst_fd)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            return src_stat, dst_stat
        finally:
            os.close(src_fd)

    def _put_file(self, key: str, source: Path) -> BlobInfo:
        _, st = self._copy_atomically(source, self.path_of(key))
        return BlobInfo(
            key=key, size=st.st_size, modified_at=datetime.fromtimestamp(st.st_mtime, UTC)
        )

    async def put_file(self, key: str, source: Path) -> BlobInfo:
        """Copy a local file into the store under `key`, atomically."""
        with disk_errors(self.root):
            return await self._offload.call(functools.partial(self._put_file, key, source))

    def _get_file(self, key: str, destination: Path) -> BlobInfo:
        source = self.path_of(key)
        try:
            st, _ = self._copy_atomically(source, destination)
        except (FileNotFoundError, IsADirectoryError) as err:
            if err.filename != str(source):
                raise  # the destination side failed, not the blob
            raise errors.NotFoundError(f"blob {key!r} does not exist in {self.root}") from err
        return BlobInfo(
            key=key, size=st.st_size, modified_at=datetime.fromtimestamp(st.st_mtime, UTC)
        )

    async def get_file(self, key: str, destination: Path) -> BlobInfo:
        """Copy the blob to a local file, atomically; raise NotFoundError if missing."""
        with disk_errors(destination):
            return await self._offload.call(functools.partial(self._get_file, key, destination))

    def _blob_path(self, key: str) -> str:
        """`path_of(key)` as a string, without building a Path."""
        return f"{self._root_str}/{'/'.join(_key_parts(key))}"

    async def put_files(self, items: Sequence[tuple[str, Path]]) -> list[BlobInfo]:
        """Copy many local files into the store, each atomically, in a few worker-thread calls.

        Raises:
            errors.ValidationError: a key is invalid (nothing is copied then).
            errors.TransientError: the disk is full, read-only or failing.
        """
        pairs = [(os.fspath(source), self._blob_path(key)) for key, source in items]
        with disk_errors(self.root):
            done = await self._copy_batch(pairs, get=False)
        return [
            BlobInfo(key=key, size=size, modified_at=datetime.fromtimestamp(mtime, UTC))
            for (key, _), (size, mtime) in zip(items, done, strict=True)
        ]

    async def get_files(self, items: Sequence[tuple[str, Path]]) -> list[BlobInfo]:
        """Copy many blobs to local files, each atomically, in a few worker-thread calls.

        Raises:
            errors.ValidationError: a key is invalid (nothing is copied then).
            errors.NotFoundError: a blob is missing (`key` names it; nothing is left at its
                destination).
            errors.TransientError: the destination's disk is full, read-only or failing.
        """
        pairs = [(self._blob_path(key), os.fspath(destination)) for key, destination in items]
        try:
            with disk_errors(os.path.dirname(pairs[0][1]) if pairs else self.root):
                done = await self._copy_batch(pairs, get=True)
        except (FileNotFoundError, IsADirectoryError) as err:
            missing = next(
                (
                    key
                    for (key, _), (src, _) in zip(items, pairs, strict=True)
                    if src == err.filename
                ),
                None,
            )
            if missing is None:
                raise  # the destination side failed, not a blob
            raise errors.NotFoundError(
                f"blob {missing!r} does not exist in {self.root}", key=missing
            ) from err
        return [
            BlobInfo(key=key, size=size, modified_at=datetime.fromtimestamp(mtime, UTC))
            for (key, _), (size, mtime) in zip(items, done, strict=True)
        ]

    async def _copy_batch(
        self, pairs: list[tuple[str, str]], *, get: bool
    ) -> list[tuple[int, float]]:
        """Copy `(source, target)` pairs on up to `_BATCH_THREADS` threads, a share at a time.

        Returns (size, mtime) per pair. Raises the error of the lowest failing pair once every
        thread has stopped; if the caller is cancelled, the threads stop after their current
        file and are waited for, so nothing of the batch is still writing when this returns.
        """
        if not pairs:
            return []
        batch = _Batch(
            pairs=pairs,
            shares=collections.deque(
                range(start, min(start + _BATCH_CHUNK, len(pairs)))
                for start in range(0, len(pairs), _BATCH_CHUNK)
            ),
            results=[(0, 0.0)] * len(pairs),
            get=get,
        )
        threads = min(_BATCH_THREADS, len(batch.shares))
        running = asyncio.gather(
            *(asyncio.to_thread(_run_batch, batch, n % 2 == 1) for n in range(threads))
        )
        try:
            await asyncio.shield(running)
        except BaseException:
            batch.stop = True
            while not running.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(running)
            raise
        if batch.errors:
            raise min(batch.errors, key=lambda e: e[0])[1]
        return batch.results

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> BlobInfo:
        """Write a stream of chunks to `key`, atomically."""
        target = self.path_of(key)
        with disk_errors(target):
            return await self._put_stream(key, target, chunks)

    async def _put_stream(self, key: str, target: Path, chunks: AsyncIterator[bytes]) -> BlobInfo:
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        info = self._info(key, target)
        return BlobInfo(
            key=key, size=info.size, md5=digest.hexdigest(), modified_at=info.modified_at
        )

    async def get_stream(
        self, key: str, *, chunk_size: int = 4 * 1024 * 1024
    ) -> AsyncIterator[bytes]:
        """Yield the blob in chunks; raise NotFoundError if missing."""
        source = self.path_of(key)
        try:
            handle = await asyncio.to_thread(source.open, "rb")
        except (FileNotFoundError, IsADirectoryError) as err:
            raise errors.NotFoundError(f"blob {key!r} does not exist in {self.root}") from err
        try:
            while True:
                with disk_errors(source):
                    chunk = await asyncio.to_thread(handle.read, chunk_size)
                if not chunk:
                    break
                yield chunk
        finally:
            handle.close()

    async def stat(self, key: str) -> BlobInfo:
        """Return the blob's size and time; raise NotFoundError if missing."""
        path = self.path_of(key)
        try:
            return self._info(key, path)
        except FileNotFoundError as err:
            raise errors.NotFoundError(f"blob {key!r} does not exist in {self.root}") from err

    def _list(self, prefix: str) -> list[BlobInfo]:
        # Walk only the deepest directory the prefix names, then filter by the full prefix.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*[p for p in head.split("/") if p]) if head else self.root
        if not start.is_dir():
            return []
        found: list[BlobInfo] = []
        for dirpath, _, filenames in os.walk(start):
            for name in filenames:
                if name.endswith(".part") and name.startswith("."):
                    continue
                path = Path(dirpath, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(self._info(key, path))
        return sorted(found, key=lambda b: b.key)

    async def list(self, prefix: str = "") -> list[BlobInfo]:
        """Return blobs whose keys start with `prefix`, sorted by key."""
        return await asyncio.to_thread(self._list, prefix)

    async def delete(self, key: str) -> None:
        """Delete a blob; succeeds if it is already gone."""
        path = self.path_of(key)
        with disk_errors(path):
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def url_for(self, key: str, *, expires_in: timedelta) -> str:
        """Return a file:// URL of the blob (local files do not expire)."""
        # What path_of(key).as_uri() gives, without building a Path per file.
        return f"{self._root_uri}/{quote('/'.join(_key_parts(key)))}"

    async def aclose(self) -> None:
        """Nothing to release."""
