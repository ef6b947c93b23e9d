"""The SQLite worker: group commit, typed retryable disk and lock errors, cancellable writes."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ion.core import errors
from ion.core.backends.sqlite._db import MAX_GROUP, SqliteWorker

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[SqliteWorker]:
    w = SqliteWorker(tmp_path / "w.db", SCHEMA)
    yield w
    await w.aclose()


def insert(key: str, value: int) -> Callable[[sqlite3.Connection], int]:
    def fn(c: sqlite3.Connection) -> int:
        c.execute("INSERT INTO t (k, v) VALUES (?, ?)", (key, value))
        return value * 10

    return fn


async def rows(worker: SqliteWorker) -> dict[str, int]:
    return dict(await worker.run(lambda c: c.execute("SELECT k, v FROM t").fetchall()))


async def test_concurrent_writes_all_commit_with_their_own_results(worker: SqliteWorker) -> None:
    results = await asyncio.gather(*(worker.write(insert(f"k{i}", i)) for i in range(300)))
    assert results == [i * 10 for i in range(300)]
    assert await rows(worker) == {f"k{i}": i for i in range(300)}


async def test_more_writes_than_one_group_all_commit(worker: SqliteWorker) -> None:
    n = MAX_GROUP * 2 + 7
    await asyncio.gather(*(worker.write(insert(f"k{i}", i)) for i in range(n)))
    assert len(await rows(worker)) == n


async def test_a_failing_write_rolls_back_alone(worker: SqliteWorker) -> None:
    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t (k, v) VALUES ('partial', 1)")
        raise LookupError("changed my mind")

    outcomes = await asyncio.gather(
        worker.write(insert("before", 1)),
        worker.write(half_then_fail),
        worker.write(insert("after", 2)),
        return_exceptions=True,
    )
    assert outcomes[0] == 10
    assert isinstance(outcomes[1], LookupError)
    assert outcomes[2] == 20
    assert await rows(worker) == {"before": 1, "after": 2}


async def test_a_lone_failing_write_rolls_back(worker: SqliteWorker) -> None:
    def fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t (k, v) VALUES ('x', 1)")
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await worker.write(fail)
    assert await rows(worker) == {}
    assert await worker.write(insert("y", 2)) == 20


async def test_a_constraint_violation_fails_only_its_write(worker: SqliteWorker) -> None:
    await worker.write(insert("dup", 1))
    outcomes = await asyncio.gather(
        worker.write(insert("dup", 2)),
        worker.write(insert("fresh", 3)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], sqlite3.IntegrityError)
    assert outcomes[1] == 30
    assert await rows(worker) == {"dup": 1, "fresh": 3}


async def test_a_read_after_an_awaited_write_sees_it(worker: SqliteWorker) -> None:
    for i in range(20):
        await worker.write(insert(f"k{i}", i))
        assert (await rows(worker))[f"k{i}"] == i


async def test_another_connection_sees_committed_writes(worker: SqliteWorker) -> None:
    await asyncio.gather(*(worker.write(insert(f"k{i}", i)) for i in range(50)))
    other = sqlite3.connect(worker.path)
    try:
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 50
    finally:
        other.close()


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    w = SqliteWorker(tmp_path / "c.db", SCHEMA)
    tasks = [asyncio.create_task(w.write(insert(f"k{i}", i))) for i in range(40)]
    await asyncio.sleep(0)  # the writes are queued, not finished
    await w.aclose()
    assert [await t for t in tasks] == [i * 10 for i in range(40)]
    check = sqlite3.connect(tmp_path / "c.db")
    try:
        assert check.execute("SELECT count(*) FROM t").fetchone()[0] == 40
    finally:
        check.close()
    with pytest.raises(RuntimeError, match="closed"):
        await w.write(insert("late", 1))


# --- disk and lock failures are TransientError, and the worker keeps working -----------------


async def test_a_full_database_is_transient_and_writes_resume_once_there_is_room(
    worker: SqliteWorker,
) -> None:
    await worker.run(lambda c: c.execute("CREATE TABLE blobs (k TEXT, data BLOB)"))
    await worker.write(insert("before", 1))
    pages = await worker.run(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await worker.run(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))  # the disk is full

    def big(key: str) -> Callable[[sqlite3.Connection], None]:
        return lambda c: c.execute("INSERT INTO blobs VALUES (?, zeroblob(20000))", (key,))

    with pytest.raises(errors.TransientError) as caught:
        await worker.write(big("alone"))
    assert f"disk full at {worker.path}" in str(caught.value)
    assert "free space and Ion resumes" in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    # A group in which one write fills the disk fails as a whole (SQLite may have rolled the
    # transaction back), each with the same actionable error.
    outcomes = await asyncio.gather(
        worker.write(insert("small", 2)), worker.write(big("big")), return_exceptions=True
    )
    assert all(isinstance(o, errors.TransientError) for o in outcomes[1:]), outcomes
    assert await rows(worker) in ({"before": 1}, {"before": 1, "small": 2})

    await worker.run(lambda c: c.execute("PRAGMA max_page_count = 1000000"))  # space returns
    await worker.write(big("after"))
    assert await worker.write(insert("later", 3)) == 30
    assert set(await rows(worker)) >= {"before", "later"}
    stored = await worker.run(lambda c: c.execute("SELECT k FROM blobs").fetchall())
    assert stored == [("after",)]


async def test_a_database_locked_past_the_busy_timeout_is_transient(tmp_path: Path) -> None:
    w = SqliteWorker(tmp_path / "busy.db", SCHEMA, busy_timeout=0.2)
    try:
        await w.write(insert("a", 1))
        other = sqlite3.connect(w.path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(errors.TransientError, match="is locked"):
                await w.write(insert("b", 2))
            assert await rows(w) == {"a": 1}  # reads go on meanwhile (WAL)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await w.write(insert("b", 2)) == 20
    finally:
        await w.aclose()


async def test_a_read_only_database_is_transient_and_the_connection_is_reopened(
    worker: SqliteWorker,
) -> None:
    await worker.write(insert("a", 1))
    await worker.run(lambda c: c.execute("PRAGMA query_only = 1"))  # as if remounted read-only
    with pytest.raises(errors.TransientError, match="read-only") as caught:
        await worker.write(insert("b", 2))
    assert str(worker.path) in str(caught.value)
    assert await worker.write(insert("b", 2)) == 20  # a fresh connection, writable again
    assert await rows(worker) == {"a": 1, "b": 2}


async def test_a_failing_commit_leaves_no_transaction_open(worker: SqliteWorker) -> None:
    # A deferred foreign key fails at COMMIT, as a full disk does when the WAL cannot grow.
    await worker.run(
        lambda c: c.executescript(
            "PRAGMA foreign_keys = ON;"
            "CREATE TABLE child (k TEXT REFERENCES t (k) DEFERRABLE INITIALLY DEFERRED);"
        )
    )

    def orphan(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO child (k) VALUES ('nobody')")

    with pytest.raises(sqlite3.IntegrityError):
        await worker.write(orphan)
    assert await worker.write(insert("next", 1)) == 10  # not "cannot start a transaction"
    assert await rows(worker) == {"next": 1}


async def test_a_wrong_path_is_not_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    w = SqliteWorker(blocker / "x.db", SCHEMA)  # its directory is a file: retrying won't help
    try:
        with pytest.raises(FileExistsError):
            await w.write(insert("a", 1))
        with pytest.raises(FileExistsError):
            await w.run(lambda c: c.execute("SELECT 1").fetchone())
    finally:
        await w.aclose()


# --- cancellable writes ------------------------------------------------------------------------


def undo_insert(c: sqlite3.Connection, value: int) -> None:
    c.execute("DELETE FROM t WHERE v * 10 = ?", (value,))


async def test_a_cancelled_write_without_undo_happens_all_the_same(worker: SqliteWorker) -> None:
    task = asyncio.create_task(worker.write(insert("k", 1)))
    await asyncio.sleep(0)
    task.cancel()
    await worker.write(insert("sync", 2))
    assert await rows(worker) == {"k": 1, "sync": 2}


async def test_a_cancellable_write_cancelled_before_it_runs_is_dropped(
    worker: SqliteWorker,
) -> None:
    task = asyncio.create_task(worker.write(insert("k", 1), undo=undo_insert))
    await asyncio.sleep(0)
    task.cancel()
    await worker.write(insert("sync", 2))
    assert task.cancelled()
    assert await rows(worker) == {"sync": 2}


async def test_a_cancellable_write_cancelled_after_its_commit_is_undone(
    worker: SqliteWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed, go_on = threading.Event(), threading.Event()
    original = worker._run_group

    def slow(*args: Any) -> Any:
        out = original(*args)
        committed.set()
        go_on.wait(10)
        return out

    monkeypatch.setattr(worker, "_run_group", slow)
    task = asyncio.create_task(worker.write(insert("k", 1), undo=undo_insert))
    assert await asyncio.to_thread(committed.wait, 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    monkeypatch.setattr(worker, "_run_group", original)
    go_on.set()
    await worker.write(insert("sync", 2))  # queued after the undo
    assert await rows(worker) == {"sync": 2}
