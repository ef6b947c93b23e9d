"""A SQLite connection owned by one worker thread, so the event loop never blocks on disk.

WAL mode lets several processes read while one writes; every write transaction starts with
BEGIN IMMEDIATE so two processes never both hold a read snapshot they then try to upgrade.

Writes are group-committed: writes requested in the same turn of the event loop, or while
another batch is on the worker thread, run together in one transaction, each inside its own
SAVEPOINT. A write that raises is rolled back to its savepoint and fails alone; the others
commit. So a dispatcher completing 100 messages at once pays for one transaction, not 100.

A batch is first tried inline, on the event loop, when the worker thread is idle: with WAL and
`synchronous=NORMAL` a small transaction costs about 0.1-0.2 ms and no fsync, less than the two
thread switches (and the GIL handovers around every SQLite call) of the hop to the worker and
back. The inline attempt never waits: another process holding the write lock, or any error,
rolls it back and the batch goes to the worker thread, which waits for the lock (the busy
timeout) and turns disk errors into what to do, exactly as before. Checkpoints (the fsyncs)
are taken off the inline path: the connection does not checkpoint on commit; every
`CHECKPOINT_EVERY` commits a passive checkpoint runs on the worker thread.

A full disk, a disk I/O error, a read-only file or a database locked by another process for
longer than the busy timeout raises `errors.TransientError` naming the file and what to do,
never a raw `sqlite3.OperationalError`; the transaction is rolled back and, where the
connection may be broken, it is closed and opened again on the next call, so the store works
again as soon as the disk does.

Reads never queue behind writes: point reads (`read`: one row by key, a cheap existence
check) run inline on the event loop and larger ones (`query`: lists) on a reader thread, each on
a read-only connection of its own; in WAL mode a reader never waits for a writer, and a read of
a page or two costs less than the hop to a thread and back. A read that cannot run so (the file
is busy, not there yet, or failing) runs on the worker, which says what is wrong.

A write given an `undo` is cancellable: if its caller is cancelled, the write is skipped if it
has not run yet, rolled back if it ran but has not committed, and undone (`undo` runs in a
transaction of its own) if it committed already. A receive uses this so that a receive
cancelled at shutdown never leaves messages locked by nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ion.core import errors
from ion.core.backends.localfs.disk import free_space, transient_os_error

T = TypeVar("T")

log = logging.getLogger(__name__)

MAX_GROUP = 512
"""Most writes committed in one transaction (bounds how long the write lock is held)."""

BUSY_TIMEOUT_SECONDS = 60.0
"""How long a statement waits for another process's write lock before it fails."""

CHECKPOINT_EVERY = 200
"""Commits between two passive WAL checkpoints (on the worker thread)."""


@dataclasses.dataclass(slots=True, eq=False)
class _Write:
    """One queued write and how its caller gets the outcome."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    undo: Callable[[sqlite3.Connection, Any], object] | None = None
    abandoned: bool = False
    """Set (on the event loop) when the caller of a write with an `undo` was cancelled; the
    worker thread then skips the write, or rolls it back if it already ran. A flag seen too late
    (after the commit) is covered by running `undo`."""


_ABANDONED = object()
"""The outcome of a write skipped or rolled back because its caller was cancelled."""

_RECONNECT = frozenset(
    {sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_CORRUPT}
)
"""Primary result codes after which the connection is closed and opened again."""


def transient_error(err: BaseException, path: Path) -> errors.TransientError | None:
    """The TransientError a person can act on for `err` at `path`, or None if it is not one.

    Transient: SQLite's full disk, disk I/O error, busy/locked database, read-only database and
    cannot-open; an OSError of a full disk (ENOSPC, EDQUOT), a read-only file system (EROFS) or
    an I/O error (EIO).
    """
    if isinstance(err, errors.TransientError):
        return err
    if not isinstance(err, sqlite3.Error):
        return transient_os_error(err, path)
    code = getattr(err, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return None
    primary = code & 0xFF
    name = getattr(err, "sqlite_errorname", "") or str(code)
    if primary == sqlite3.SQLITE_FULL:
        message = f"disk full at {path} ({err}; {free_space(path)}): free space and Ion resumes"
    elif primary == sqlite3.SQLITE_IOERR:
        message = (
            f"disk I/O error at {path} ({name}; {free_space(path)}): check that the disk is"
            " mounted, writable and not full; Ion retries and resumes once it is"
        )
    elif primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        message = (
            f"database {path} is locked ({err}): another process held its write lock for longer"
            " than the busy timeout; Ion retries (look for a stuck process using the file)"
        )
    elif primary == sqlite3.SQLITE_READONLY:
        message = (
            f"database {path} is read-only ({name}: {err}): make the file, its -wal and -shm"
            " files and its directory writable (or remount the disk read-write) and Ion resumes"
        )
    elif primary == sqlite3.SQLITE_CANTOPEN:
        message = (
            f"cannot open database {path} ({err}; {free_space(path)}): check that its directory"
            " exists, is writable and has free space; Ion retries"
        )
    else:
        return None
    transient = errors.TransientError(message)
    transient.__cause__ = err
    return transient


def _fatal_to_transaction(err: BaseException, conn: sqlite3.Connection) -> bool:
    """True if, after `err` in a write, the whole transaction must be given up."""
    if not conn.in_transaction:
        return True  # SQLite rolled it back itself (as it may on a full disk or I/O error)
    code = getattr(err, "sqlite_errorcode", None) if isinstance(err, sqlite3.Error) else None
    return isinstance(code, int) and (code & 0xFF) in (
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CORRUPT,
    )


class SqliteWorker:
    """Runs functions against one connection on one dedicated thread."""

    def __init__(
        self, path: Path, schema: str, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS
    ) -> None:
        self.path = path
        self._schema = schema
        self._busy_timeout = busy_timeout
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.name}")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self._reader: sqlite3.Connection | None = None
        """Read-only connection for inline point reads, opened on first use."""
        self._readers = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"sqlite-r-{path.name}"
        )
        self._query_conn: sqlite3.Connection | None = None
        """The reader thread's read-only connection."""
        self._using = threading.Lock()
        """Held by whoever uses the connection: the worker thread, or an inline batch."""
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,  # the worker thread, or the event loop when it is idle
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint=0")  # see `_checkpoint_soon`
                conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
                conn.executescript(self._schema)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
                raise
            self._conn = conn
        return self._conn

    def _discard_connection(self) -> None:
        """Close the connection (rolling back what it holds); the next call opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _failed(self, err: BaseException) -> BaseException:
        """On the worker thread: what to raise for `err`, dropping a possibly broken connection."""
        transient = transient_error(err, self.path)
        code = getattr(err, "sqlite_errorcode", None) if isinstance(err, sqlite3.Error) else None
        broken = isinstance(code, int) and (code & 0xFF) in _RECONNECT
        if self._conn is not None and (broken or self._conn.in_transaction):
            self._discard_connection()
        return err if transient is None else transient

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._using:
            try:
                return fn(self._connection())
            except (sqlite3.Error, OSError) as err:
                failure = self._failed(err)
                if failure is err:
                    raise
                raise failure from err

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the worker thread and return its result.

        Raises:
            errors.TransientError: the disk is full or failing, the file read-only or locked.
        """
        if self._closed:
            raise RuntimeError(f"{self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn)

    def _read_only(self) -> sqlite3.Connection | None:
        """A new read-only connection, or None if the database is not there yet."""
        if self._conn is None:  # the worker has not opened it (nor made the schema) yet
            return None
        try:
            return sqlite3.connect(
                f"{self.path.as_uri()}?mode=ro",
                uri=True,
                timeout=0,
                isolation_level=None,
                check_same_thread=False,  # each is used by one thread, one call at a time
            )
        except sqlite3.Error:
            return None

    def _inline_reader(self) -> sqlite3.Connection | None:
        if self._reader is None:
            self._reader = self._read_only()
        return self._reader

    def _query(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """On the reader thread: (True, fn(connection)), or (False, None) if it could not run."""
        if self._query_conn is None:
            self._query_conn = self._read_only()
            if self._query_conn is None:
                return False, None
        try:
            return True, fn(self._query_conn)
        except sqlite3.Error:
            conn, self._query_conn = self._query_conn, None
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            return False, None

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read `fn(connection)` on the reader thread (on the worker if it cannot run there).

        `fn` must only read; it may run twice.

        Raises:
            errors.TransientError: the disk is failing or the file is locked (from the worker).
        """
        if self._closed:
            raise RuntimeError(f"{self.path} is closed")
        loop = asyncio.get_running_loop()
        ran, value = await loop.run_in_executor(self._readers, self._query, fn)
        if ran:
            return value  # type: ignore[return-value]
        return await self.run(fn)

    def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(sqlite3.Error):
                reader.close()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a small read `fn(connection)` inline if it can run at once, else on the worker.

        For reads of one row or a count: they block the event loop while they run (tens of
        microseconds). `fn` must only read; it may run twice (inline, then on the worker).

        Raises:
            errors.TransientError: the disk is failing or the file is locked (from the worker).
        """
        if self._closed:
            raise RuntimeError(f"{self.path} is closed")
        reader = self._inline_reader()
        if reader is not None:
            try:
                return fn(reader)
            except sqlite3.Error:
                self._drop_reader()  # busy, gone or failing: the worker says what it is
        return await self.run(fn)

    async def write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        undo: Callable[[sqlite3.Connection, T], object] | None = None,
    ) -> T:
        """Run `fn(connection)` atomically inside a BEGIN IMMEDIATE transaction.

        `fn`'s changes commit together or not at all; if it raises, they are rolled back and
        the error is raised here. Other writes may share the transaction (see the module
        docstring) but never see `fn` fail or fail with it.

        Without `undo`, a write whose caller is cancelled happens all the same. With `undo`,
        it is cancellable: skipped or rolled back if it has not committed, else
        `undo(connection, result)` runs in a later transaction (best effort: if that fails, it
        is logged).

        Raises:
            errors.TransientError: the disk is full or failing, the file read-only or locked;
                nothing of `fn` was written.
        """
        if self._closed:
            raise RuntimeError(f"{self.path} is closed")
        loop = asyncio.get_running_loop()
        entry = _Write(fn, loop.create_future(), undo)
        self._pending.append(entry)
        self._start_flusher(loop)
        try:
            result: T = await entry.future
        except asyncio.CancelledError:
            entry.abandoned = True
            done = entry.future
            if undo is not None and done.done() and not done.cancelled() and not done.exception():
                # Committed and handed back, but the caller was cancelled before it resumed.
                self._pending.insert(0, self._undo_write(loop, entry, done.result()))
                self._start_flusher(loop)
            raise
        return result

    def _start_flusher(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name=f"sqlite-flush-{self.path.name}")

    async def _flush(self) -> None:
        """Commit queued writes, batch after batch, until none is left."""
        loop = asyncio.get_running_loop()
        while self._pending:
            taken, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            # A cancellable write whose caller is gone before it ran is simply dropped.
            batch = [w for w in taken if not (w.undo is not None and w.abandoned)]
            if not batch:
                continue
            outcomes = self._inline_group(batch)
            try:
                if outcomes is None:
                    outcomes = await loop.run_in_executor(self._pool, self._run_group, batch)
            except BaseException as err:  # BEGIN or COMMIT failed, or we were cancelled
                failure = err if isinstance(err, Exception) else RuntimeError(f"{err!r}")
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(failure)
                if not isinstance(err, Exception):
                    for w in self._pending:
                        if not w.future.done():
                            w.future.set_exception(failure)
                    self._pending = []
                    raise
                continue
            undos: list[_Write] = []
            for w, (ok, value) in zip(batch, outcomes, strict=True):
                if w.future.done():  # the caller was cancelled
                    if ok and w.undo is not None:  # ...after the commit: undo it
                        undos.append(self._undo_write(loop, w, value))
                    continue  # without an undo, the write happened all the same
                if ok:
                    w.future.set_result(value)
                elif value is _ABANDONED:
                    w.future.cancel()
                else:
                    w.future.set_exception(value)
            self._pending[:0] = undos  # before later writes, so they see it undone
            self._commits += 1
            if self._commits % CHECKPOINT_EVERY == 0:
                self._checkpoint_soon(loop)

    def _inline_group(self, writes: list[_Write]) -> list[tuple[bool, Any]] | None:
        """Run a batch on the event loop if that needs no wait; None if the worker must."""
        conn = self._conn
        if conn is None or not self._using.acquire(blocking=False):
            return None  # not open yet (the worker opens it), or the worker is using it
        try:
            try:
                conn.execute("PRAGMA busy_timeout=0")  # never wait here: the worker will
                outcomes = self._group(conn, writes)
            except Exception:
                # Locked by another process, or a failing disk: nothing of the batch was kept
                # (`_group` rolled it back); the worker runs it again and reports what it is.
                return None
            finally:
                try:
                    conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
                except sqlite3.Error:
                    self._discard_connection()  # the worker opens a new one, waiting as it should
        finally:
            self._using.release()
        return [
            (ok, value if ok or not isinstance(value, BaseException) else self._outcome(value))
            for ok, value in outcomes
        ]

    def _checkpoint_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Copy the WAL back into the database on the worker thread (passive: never waits)."""
        if self._checkpoint is not None and not self._checkpoint.done():
            return

        def checkpoint() -> None:
            with self._using:
                if self._conn is not None:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        def report(future: asyncio.Future[None]) -> None:
            if not future.cancelled() and (err := future.exception()) is not None:
                log.debug("WAL checkpoint of %s failed: %s", self.path, err)

        self._checkpoint = loop.run_in_executor(self._pool, checkpoint)
        self._checkpoint.add_done_callback(report)

    def _undo_write(self, loop: asyncio.AbstractEventLoop, w: _Write, value: Any) -> _Write:
        undo = w.undo
        assert undo is not None

        def report(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and (err := future.exception()) is not None:
                log.warning("could not undo a cancelled write to %s: %s", self.path, err)

        future: asyncio.Future[Any] = loop.create_future()
        future.add_done_callback(report)
        return _Write(lambda c: undo(c, value), future)

    def _run_group(self, writes: list[_Write]) -> list[tuple[bool, Any]]:
        with self._using:
            try:
                outcomes = self._group(self._connection(), writes)
            except (sqlite3.Error, OSError) as err:
                failure = self._failed(err)
                if failure is err:
                    raise
                raise failure from err
        return [
            (ok, value if ok or not isinstance(value, BaseException) else self._outcome(value))
            for ok, value in outcomes
        ]

    def _outcome(self, err: BaseException) -> BaseException:
        transient = transient_error(err, self.path) if isinstance(err, sqlite3.Error) else None
        return err if transient is None else transient

    @staticmethod
    def _group(conn: sqlite3.Connection, writes: list[_Write]) -> list[tuple[bool, Any]]:
        """Run each write in its own savepoint of one transaction; return their outcomes.

        A write that fails in a way that ends the transaction (a full disk, an I/O error, or
        SQLite rolling the transaction back itself) fails the whole group with its error.
        """
        savepoints = len(writes) > 1  # alone, the transaction is the write's own
        outcomes: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for w in writes:
                if w.undo is not None and w.abandoned:
                    outcomes.append((False, _ABANDONED))
                    continue
                if savepoints:
                    conn.execute("SAVEPOINT w")
                ok: bool
                value: Any
                try:
                    value, ok = w.fn(conn), True
                except Exception as err:
                    if _fatal_to_transaction(err, conn):
                        raise
                    value, ok = err, False
                if ok and w.undo is not None and w.abandoned:
                    value, ok = _ABANDONED, False  # its caller is gone: do not keep it
                if savepoints:
                    if not ok:
                        conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                elif not ok:
                    conn.execute("ROLLBACK")
                    return [(False, value)]
                outcomes.append((ok, value))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return outcomes

    async def aclose(self) -> None:
        """Finish queued writes, close the connection and stop the thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await self._flusher

        self._drop_reader()
        loop = asyncio.get_running_loop()

        def close_query_conn() -> None:
            conn, self._query_conn = self._query_conn, None
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

        await loop.run_in_executor(self._readers, close_query_conn)
        self._readers.shutdown(wait=True)
        await loop.run_in_executor(self._pool, self._discard_connection)
        self._pool.shutdown(wait=True)
