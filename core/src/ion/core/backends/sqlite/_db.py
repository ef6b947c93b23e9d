"""A SQLite connection owned by one worker thread, so the event loop never blocks on disk.

WAL mode lets several processes read while one writes; every write transaction starts with
BEGIN IMMEDIATE so two processes never both hold a read snapshot they then try to upgrade.

Writes are group-committed: writes requested while another batch is on the worker thread
queue up and then run together in one transaction, each inside its own SAVEPOINT. A write
that raises is rolled back to its savepoint and fails alone; the others commit. So a
dispatcher completing 100 messages at once pays for one transaction, not 100, and a single
write still costs what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MAX_GROUP = 512
"""Most writes committed in one transaction (bounds how long the write lock is held)."""

_Write = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]


class SqliteWorker:
    """Runs functions against one connection on one dedicated thread."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.name}")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.executescript(self._schema)
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the worker thread and return its result."""
        if self._closed:
            raise RuntimeError(f"{self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._connection()))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` atomically inside a BEGIN IMMEDIATE transaction.

        `fn`'s changes commit together or not at all; if it raises, they are rolled back and
        the error is raised here. Other writes may share the transaction (see the module
        docstring) but never see `fn` fail or fail with it.
        """
        if self._closed:
            raise RuntimeError(f"{self.path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name=f"sqlite-flush-{self.path.name}")
        return await future

    async def _flush(self) -> None:
        """Commit queued writes, batch after batch, until none is left."""
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            fns = [fn for fn, _ in batch]
            try:
                outcomes = await loop.run_in_executor(self._pool, self._run_group, fns)
            except BaseException as err:  # BEGIN or COMMIT failed, or we were cancelled
                failure = err if isinstance(err, Exception) else RuntimeError(f"{err!r}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                if not isinstance(err, Exception):
                    for _, future in self._pending:
                        if not future.done():
                            future.set_exception(failure)
                    self._pending = []
                    raise
                continue
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue  # the caller was cancelled; the write happened all the same
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _run_group(self, fns: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        return self._group(self._connection(), fns)

    @staticmethod
    def _group(
        conn: sqlite3.Connection, fns: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[tuple[bool, Any]]:
        """Run each function in its own savepoint of one transaction; return their outcomes."""
        if len(fns) == 1:  # alone: no savepoint needed, the transaction is its own
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fns[0](conn)
            except BaseException as err:
                conn.execute("ROLLBACK")
                if not isinstance(err, Exception):
                    raise
                return [(False, err)]
            conn.execute("COMMIT")
            return [(True, result)]
        outcomes: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for fn in fns:
                conn.execute("SAVEPOINT w")
                try:
                    outcomes.append((True, fn(conn)))
                except Exception as err:
                    conn.execute("ROLLBACK TO w")
                    outcomes.append((False, err))
                conn.execute("RELEASE w")
            conn.execute("COMMIT")
        except BaseException:
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

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, close)
        self._pool.shutdown(wait=True)
