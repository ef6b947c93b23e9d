"""Embedded bus: publish + receive + complete, in msg/s, batched and one by one.

Ion: `SqliteEventBus` on a fresh file, one topic with one subscription, 200-byte bodies.
- batched: publish in batches of 100, receive up to 100 at a time, complete them concurrently;
- one by one: publish 1, receive 1, complete 1.

Baseline: raw `sqlite3` on a table shaped like the bus's, with the same pragmas (WAL,
synchronous=NORMAL) and the same transactions the work needs at the least:
- batched: per batch of 100, one transaction inserting 100 rows, one selecting and marking
  them locked, one deleting them;
- one by one: those three transactions per message.
The baseline skips what the bus adds on top (duplicate detection, fan-out to subscriptions,
lock tokens and expiry checks, the worker thread and the event loop), which is the overhead
measured.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from datetime import timedelta
from pathlib import Path

from _common import note, parse_args, report, scratch

from ion.core.backends.sqlite.bus import SqliteEventBus
from ion.core.ports.bus import OutgoingMessage, SubscriptionOptions

BODY = b"x" * 200
BATCH = 100
WAIT = timedelta(seconds=1)


async def ion_batched(path: Path, n: int) -> float:
    bus = SqliteEventBus(path)
    try:
        await bus.ensure_subscription("bench", "sub", SubscriptionOptions())
        start = time.perf_counter()
        done = 0
        while done < n:
            size = min(BATCH, n - done)
            await bus.publish(
                "bench",
                [OutgoingMessage(body=BODY, message_id=uuid.uuid4().hex) for _ in range(size)],
            )
            got = 0
            while got < size:
                batch = await bus.receive("bench", "sub", max_messages=size - got, max_wait=WAIT)
                await asyncio.gather(*(bus.complete(m) for m in batch))
                got += len(batch)
            done += size
        elapsed = time.perf_counter() - start
        counts = await bus.counts("bench", "sub")
        assert counts.active == 0, counts
        return n / elapsed
    finally:
        await bus.aclose()


async def ion_one_by_one(path: Path, n: int) -> float:
    bus = SqliteEventBus(path)
    try:
        await bus.ensure_subscription("bench", "sub", SubscriptionOptions())
        start = time.perf_counter()
        for _ in range(n):
            await bus.publish("bench", [OutgoingMessage(body=BODY, message_id=uuid.uuid4().hex)])
            (message,) = await bus.receive("bench", "sub", max_messages=1, max_wait=WAIT)
            await bus.complete(message)
        elapsed = time.perf_counter() - start
        counts = await bus.counts("bench", "sub")
        assert counts.active == 0, counts
        return n / elapsed
    finally:
        await bus.aclose()


def _raw_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE m (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT, subscription TEXT,"
        " message_id TEXT, body BLOB, locked_until REAL NOT NULL DEFAULT 0)"
    )
    conn.execute("CREATE INDEX m_ready ON m (topic, subscription, locked_until, seq)")
    return conn


def raw_sqlite(path: Path, n: int, batch: int) -> float:
    conn = _raw_connection(path)
    try:
        start = time.perf_counter()
        done = 0
        while done < n:
            size = min(batch, n - done)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO m (topic, subscription, message_id, body) VALUES (?, ?, ?, ?)",
                [("bench", "sub", uuid.uuid4().hex, BODY) for _ in range(size)],
            )
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                "SELECT seq, body FROM m WHERE topic = ? AND subscription = ? AND locked_until <= ?"
                " ORDER BY seq LIMIT ?",
                ("bench", "sub", time.time(), size),
            ).fetchall()
            conn.executemany(
                "UPDATE m SET locked_until = ? WHERE seq = ?",
                [(time.time() + 60, r[0]) for r in rows],
            )
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM m WHERE seq = ?", [(r[0],) for r in rows])
            conn.execute("COMMIT")
            done += size
        elapsed = time.perf_counter() - start
        assert conn.execute("SELECT count(*) FROM m").fetchone()[0] == 0
        return n / elapsed
    finally:
        conn.close()


def main() -> None:
    args = parse_args(__doc__ or "")
    n_batched = 2_000 if args.quick else 20_000
    n_single = 500 if args.quick else 3_000
    note("bus baseline: raw sqlite3, same pragmas, insert / select+mark / delete transactions")
    with scratch("bus", keep=args.keep) as tmp:
        ion_b = asyncio.run(ion_batched(tmp / "ion-batched.db", n_batched))
        raw_b = raw_sqlite(tmp / "raw-batched.db", n_batched, BATCH)
        report("bus.batched", ion_b, "msg/s", baseline=raw_b, target=">=5000msg/s")
        ion_1 = asyncio.run(ion_one_by_one(tmp / "ion-single.db", n_single))
        raw_1 = raw_sqlite(tmp / "raw-single.db", n_single, 1)
        report("bus.one_by_one", ion_1, "msg/s", baseline=raw_1)


if __name__ == "__main__":
    main()
