"""The SQLite worker's group commit: concurrent writes share a transaction but fail alone."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

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
