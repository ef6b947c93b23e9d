"""The embedded EventBus: topics and subscriptions in one SQLite file (WAL), safe across processes.

Each subscription holds its own copy of every message published to its topic (fan-out), and a
receive locks rows by writing a lock token and expiry inside one IMMEDIATE transaction, so
replicas of a module in different processes compete for messages without double delivery.
Waiting receivers are woken at once by publishes in the same process; for the rest (other
processes' publishes, scheduled messages coming due, lapsed locks) one poller per bus looks
for every waiting subscription in a single read, so idle modules cost one query each per
poll, not a task wake-up each.
Better still, a publish in the same process hands its message straight to a receiver of this
process waiting on the subscription: the publish's own transaction inserts the message already
locked for that receiver (delivery count 1, as a receive would), so no second transaction and
no wake-up round are needed; if that receiver has gone meanwhile (timed out, cancelled), the
lock is released at once, as for a cancelled receive. A receive cancelled before it returns (a
dispatcher stopping) takes no lock: its transaction is skipped or rolled back, or its locks are
released if it had committed already.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ion.core import errors
from ion.core.backends.sqlite._db import SqliteWorker
from ion.core.clock import Clock, SystemClock
from ion.core.ports.bus import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    OutgoingMessage,
    PeekedMessage,
    ReceivedMessage,
    SubscriptionCounts,
    SubscriptionOptions,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    dedup_window REAL NOT NULL DEFAULT 600
);
CREATE TABLE IF NOT EXISTS subscriptions (
    topic TEXT NOT NULL,
    name TEXT NOT NULL,
    max_delivery_count INTEGER NOT NULL,
    lock_duration REAL NOT NULL,
    PRIMARY KEY (topic, name)
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    subscription TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    properties TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lock_token TEXT,
    locked_until REAL NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0,
    dl_reason TEXT NOT NULL DEFAULT '',
    dl_description TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS messages_ready
    ON messages (topic, subscription, dead, visible_at, seq);
CREATE INDEX IF NOT EXISTS messages_lock ON messages (lock_token);
CREATE TABLE IF NOT EXISTS seen_ids (
    topic TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (topic, message_id)
);
"""

log = logging.getLogger(__name__)

_POLL_MIN = 0.005
_POLL_MAX = 0.05
_POLL_CHUNK = 300
"""Subscriptions looked at by one statement of a poll (3 parameters each)."""
_BUSY_SECONDS = 1.0
"""A subscription that got messages this recently is polled for more at `_POLL_MIN` first."""


class _Waiter:
    """A receiver of this process waiting for messages on one subscription."""

    __slots__ = ("claimed", "future", "max_messages")

    def __init__(self, future: asyncio.Future[list[ReceivedMessage]], max_messages: int) -> None:
        self.future = future
        """Resolved with messages locked for it (a hand-off), or [] to look again (a wake-up)."""
        self.max_messages = max_messages
        self.claimed = False
        """Set while a publish's transaction is locking messages for it."""


def _handed(waiter: _Waiter) -> list[ReceivedMessage]:
    """Messages handed to `waiter` (locked for it), if any."""
    done = waiter.future
    if done.done() and not done.cancelled():
        return done.result()
    return []


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class SqliteEventBus:
    """EventBus on a SQLite file; see the module docstring for how it stays correct."""

    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        self._db = SqliteWorker(path, _SCHEMA)
        self._clock = clock or SystemClock()
        self._published: dict[str, asyncio.Event] = {}
        """Per topic, set when a message may have become ready (wakes this process's receivers)."""
        self._waiters: dict[tuple[str, str, bool], list[_Waiter]] = {}
        """Receivers of this process waiting, by (topic, subscription, dead), oldest first."""
        self._releases: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._poll_delay = _POLL_MIN
        """The poller's next pause: short after something was found or a busy receiver starts
        waiting again, doubling up to `_POLL_MAX` while nothing is."""
        self._busy: dict[tuple[str, str, bool], float] = {}
        """When each subscription's receive last returned messages (loop time)."""

    def __repr__(self) -> str:
        return f"SqliteEventBus({str(self._db.path)!r})"

    async def __aenter__(self) -> SqliteEventBus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def ensure_topic(self, topic: str) -> None:
        """Create the topic if it does not exist."""
        await self._db.write(
            lambda c: c.execute("INSERT OR IGNORE INTO topics (name) VALUES (?)", (topic,))
        )

    async def ensure_subscription(
        self, topic: str, subscription: str, options: SubscriptionOptions
    ) -> None:
        """Create the subscription (and its topic) if missing; update its options if present."""
        window = options.duplicate_detection_window.total_seconds()

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO topics (name, dedup_window) VALUES (?, ?) ON CONFLICT(name) DO UPDATE"
                " SET dedup_window = max(dedup_window, excluded.dedup_window)",
                (topic, window),
            )
            c.execute(
                "INSERT INTO subscriptions (topic, name, max_delivery_count, lock_duration)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(topic, name) DO UPDATE SET"
                " max_delivery_count = excluded.max_delivery_count,"
                " lock_duration = excluded.lock_duration",
                (
                    topic,
                    subscription,
                    options.max_delivery_count,
                    options.lock_duration.total_seconds(),
                ),
            )

        await self._db.write(write)

    async def delete_subscription(self, topic: str, subscription: str) -> None:
        """Delete the subscription and its messages; succeeds if it is already gone."""

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "DELETE FROM subscriptions WHERE topic = ? AND name = ?", (topic, subscription)
            )
            c.execute(
                "DELETE FROM messages WHERE topic = ? AND subscription = ?", (topic, subscription)
            )

        await self._db.write(write)

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        """Publish messages to every subscription of the topic in one transaction."""
        now = _ts(self._clock.now())
        # Receivers to hand messages to: the first waiting one of each subscription, claimed
        # here on the event loop (the transaction may run on the worker thread).
        takers: dict[str, _Waiter] = {}
        for (waited_topic, sub, dead), waiters in self._waiters.items():
            if waited_topic == topic and not dead:
                waiter = next((w for w in waiters if not w.claimed and not w.future.done()), None)
                if waiter is not None:
                    waiter.claimed = True
                    takers[sub] = waiter
        handed: dict[str, list[ReceivedMessage]] = {}

        def hand_over(
            c: sqlite3.Connection, msg: OutgoingMessage, sub: str, props: str, lock_duration: float
        ) -> bool:
            """Insert `msg` for `sub` locked for its waiting receiver; False if it takes no more."""
            taken = handed.setdefault(sub, [])
            if len(taken) >= takers[sub].max_messages:
                return False
            token = uuid.uuid4().hex
            until = now + lock_duration
            seq = c.execute(
                "INSERT INTO messages (topic, subscription, message_id, body, properties,"
                " enqueued_at, visible_at, delivery_count, lock_token, locked_until)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (topic, sub, msg.message_id, msg.body, props, now, now, token, until),
            ).lastrowid
            assert seq is not None
            taken.append(
                ReceivedMessage(
                    topic=topic,
                    subscription=sub,
                    message_id=msg.message_id,
                    body=bytes(msg.body),
                    properties=json.loads(props),
                    delivery_count=1,
                    lock_token=token,
                    locked_until=_dt(until),
                    enqueued_at=_dt(now),
                    sequence_number=seq,
                )
            )
            return True

        def write(c: sqlite3.Connection) -> None:
            handed.clear()  # a batch may run twice (inline, then on the worker)
            row = c.execute("SELECT dedup_window FROM topics WHERE name = ?", (topic,)).fetchone()
            if row is None:
                raise errors.NotFoundError(
                    f"topic {topic!r} does not exist; a module subscribing to it creates it"
                )
            window = float(row[0])
            durations = dict(
                c.execute(
                    "SELECT name, lock_duration FROM subscriptions WHERE topic = ?", (topic,)
                ).fetchall()
            )
            subs = list(durations)
            for msg in messages:
                seen = c.execute(
                    "SELECT seen_at FROM seen_ids WHERE topic = ? AND message_id = ?",
                    (topic, msg.message_id),
                ).fetchone()
                if seen is not None and now - float(seen[0]) < window:
                    continue  # duplicate detection: the first copy already went out
                c.execute(
                    "INSERT OR REPLACE INTO seen_ids (topic, message_id, seen_at) VALUES (?, ?, ?)",
                    (topic, msg.message_id, now),
                )
                visible = _ts(msg.scheduled_at) if msg.scheduled_at else now
                props = json.dumps(dict(msg.properties))
                targets = subs
                if msg.to_subscription is not None:
                    targets = [s for s in subs if s == msg.to_subscription]
                if visible <= now:
                    targets = [
                        s
                        for s in targets
                        if s not in takers or not hand_over(c, msg, s, props, float(durations[s]))
                    ]
                c.executemany(
                    "INSERT INTO messages (topic, subscription, message_id, body, properties,"
                    " enqueued_at, visible_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(topic, s, msg.message_id, msg.body, props, now, visible) for s in targets],
                )
            if len(subs) and c.execute("SELECT random() % 64 = 0").fetchone()[0]:
                c.execute(
                    "DELETE FROM seen_ids WHERE topic = ? AND seen_at < ?", (topic, now - window)
                )

        try:
            await self._db.write(write)
        except BaseException:
            for waiter in takers.values():
                waiter.claimed = False  # nothing was handed over: they wait on
            raise
        for sub, waiter in takers.items():
            waiter.claimed = False
            got = handed.get(sub, [])
            if not waiter.future.done():
                waiter.future.set_result(got)
            elif got:  # its receiver left meanwhile: as if it had never received them
                self._release(got)
        self._wake(topic)

    def _release(self, got: list[ReceivedMessage]) -> None:
        """Unlock messages handed to a receiver that was gone (in the background)."""

        async def release() -> None:
            try:
                await self._db.write(lambda c: self._unlock(c, got))
            except errors.IonError as err:  # the lock lapses on its own then
                log.warning("could not release %d handed-over message(s): %s", len(got), err)

        task = asyncio.get_running_loop().create_task(release())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    def _wake(self, topic: str) -> None:
        event = self._published.get(topic)
        if event is not None:
            event.set()
        for (waited_topic, _, _), waiters in self._waiters.items():
            if waited_topic == topic:
                for waiter in waiters:
                    if not waiter.claimed and not waiter.future.done():
                        waiter.future.set_result([])

    async def receive(
        self, topic: str, subscription: str, *, max_messages: int = 1, max_wait: timedelta
    ) -> list[ReceivedMessage]:
        """Lock and return up to `max_messages`, waiting up to `max_wait` for the first."""
        return await self._receive(topic, subscription, max_messages, max_wait, dead=False)

    async def receive_dead_letters(
        self, topic: str, subscription: str, *, max_messages: int = 1, max_wait: timedelta
    ) -> list[ReceivedMessage]:
        """Lock and return messages from the dead-letter queue."""
        return await self._receive(topic, subscription, max_messages, max_wait, dead=True)

    async def _receive(
        self, topic: str, subscription: str, max_messages: int, max_wait: timedelta, *, dead: bool
    ) -> list[ReceivedMessage]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait.total_seconds()
        published = self._published.setdefault(topic, asyncio.Event())
        key = (topic, subscription, dead)
        busy = loop.time() - self._busy.get(key, -_BUSY_SECONDS) < _BUSY_SECONDS
        woken = busy  # an idle receiver coming back every `max_wait` looks before it locks
        while True:
            published.clear()
            # Woken (or busy): try to lock at once. Else look first, so idle receivers do not
            # take the database's write lock each time they come back. Cancellable: a
            # receive cancelled (a dispatcher stopping) before its locks reach the caller
            # takes none, or releases those it took.
            if woken or await self._db.read(
                lambda c: self._maybe_ready(c, topic, subscription, dead)
            ):
                got = await self._db.write(
                    lambda c: self._lock_batch(c, topic, subscription, max_messages, dead),
                    undo=self._unlock,
                )
                if got:
                    self._busy[key] = loop.time()
                    return got
            woken = True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            if published.is_set():  # a publish came while we looked
                continue
            waiter = _Waiter(loop.create_future(), max_messages)
            waiting = self._waiters.setdefault(key, [])
            waiting.append(waiter)
            if busy:
                # Its last receive got messages: more may come from another process soon.
                # (An idle receiver coming back every `max_wait` leaves the poller slow.)
                self._poll_delay = _POLL_MIN
                busy = False
            self._start_poller(loop)
            try:
                async with asyncio.timeout(remaining):
                    got = await waiter.future
                if got:
                    self._busy[key] = loop.time()
                    return got  # handed over by a publish of this process, locked for us
            except TimeoutError:
                if handed := _handed(waiter):  # arrived just as the wait ran out: ours
                    self._busy[key] = loop.time()
                    return handed
                return []
            except asyncio.CancelledError:
                if handed := _handed(waiter):  # arrived just as we were cancelled: give back
                    self._release(handed)
                raise
            finally:
                waiting.remove(waiter)
                if not waiting:
                    del self._waiters[key]

    def _start_poller(self, loop: asyncio.AbstractEventLoop) -> None:
        poller = self._poller
        # A poller of another event loop (a bus used by one `asyncio.run` after another) never
        # runs again: this loop gets its own.
        if poller is None or poller.done() or poller.get_loop() is not loop:
            self._poller = loop.create_task(self._poll(), name=f"sqlite-poll-{self._db.path.name}")

    async def _poll(self) -> None:
        """While receivers of this process wait, look for messages they could lock now that
        no publish of this process announced, and wake those receivers.

        A poll only reads: the receivers it wakes take the write lock, and only then.
        """
        while self._waiters:
            await asyncio.sleep(self._poll_delay)
            keys = [
                key
                for key, waiters in self._waiters.items()
                if any(not w.claimed and not w.future.done() for w in waiters)
            ]
            if not keys:
                continue
            try:
                ready = await self._db.read(functools.partial(self._ready_keys, keys=keys))
            except errors.IonError as err:
                # Each woken receiver meets the error itself, in its own transaction.
                log.debug("polling %s failed: %s", self._db.path, err)
                ready = keys
            for key in ready:
                for waiter in self._waiters.get(key, ()):
                    if not waiter.claimed and not waiter.future.done():
                        waiter.future.set_result([])
            self._poll_delay = _POLL_MIN if ready else min(self._poll_delay * 2, _POLL_MAX)

    def _ready_keys(
        self, c: sqlite3.Connection, *, keys: list[tuple[str, str, bool]]
    ) -> list[tuple[str, str, bool]]:
        """Those of `keys` (topic, subscription, dead) whose receivers could lock a message
        now, or whose subscription is gone (for them to raise): one statement per few hundred
        keys, each key an index probe."""
        now = _ts(self._clock.now())
        ready: list[tuple[str, str, bool]] = []
        for start in range(0, len(keys), _POLL_CHUNK):
            chunk = keys[start : start + _POLL_CHUNK]
            values = ", ".join(["(?, ?, ?)"] * len(chunk))
            args: list[Any] = [v for t, s, d in chunk for v in (t, s, int(d))]
            rows = c.execute(
                f"WITH k(topic, sub, dead) AS (VALUES {values})"
                " SELECT k.topic, k.sub, k.dead FROM k"
                " WHERE NOT EXISTS (SELECT 1 FROM subscriptions s"
                " WHERE s.topic = k.topic AND s.name = k.sub)"
                " OR EXISTS (SELECT 1 FROM messages m WHERE m.topic = k.topic"
                " AND m.subscription = k.sub AND m.dead = k.dead"
                " AND m.visible_at <= ? AND m.locked_until <= ?)",
                [*args, now, now],
            ).fetchall()
            ready += [(t, s, bool(d)) for t, s, d in rows]
        return ready

    def _maybe_ready(
        self, c: sqlite3.Connection, topic: str, subscription: str, dead: bool
    ) -> bool:
        """True if a message could be locked now, or the subscription is gone (to raise)."""
        now = _ts(self._clock.now())
        row = c.execute(
            "SELECT EXISTS(SELECT 1 FROM subscriptions WHERE topic = ? AND name = ?),"
            " EXISTS(SELECT 1 FROM messages WHERE topic = ? AND subscription = ? AND dead = ?"
            " AND visible_at <= ? AND locked_until <= ?)",
            (topic, subscription, topic, subscription, int(dead), now, now),
        ).fetchall()[0]
        return not row[0] or bool(row[1])

    def _lock_batch(
        self, c: sqlite3.Connection, topic: str, subscription: str, limit: int, dead: bool
    ) -> list[ReceivedMessage]:
        sub = c.execute(
            "SELECT max_delivery_count, lock_duration FROM subscriptions WHERE topic = ? AND name = ?",
            (topic, subscription),
        ).fetchone()
        if sub is None:
            raise errors.NotFoundError(f"subscription {topic}/{subscription} does not exist")
        max_count, lock_duration = int(sub[0]), float(sub[1])
        now = _ts(self._clock.now())
        out: list[ReceivedMessage] = []
        while len(out) < limit:
            rows = c.execute(
                "SELECT seq, message_id, body, properties, delivery_count, enqueued_at FROM messages"
                " WHERE topic = ? AND subscription = ? AND dead = ? AND visible_at <= ?"
                " AND locked_until <= ? ORDER BY seq LIMIT ?",
                (topic, subscription, int(dead), now, now, limit - len(out)),
            ).fetchall()
            if not rows:
                break
            for seq, message_id, body, props, count, enqueued in rows:
                if not dead and count >= max_count:
                    c.execute(
                        "UPDATE messages SET dead = 1, lock_token = NULL, locked_until = 0,"
                        " dl_reason = ?, dl_description = ? WHERE seq = ?",
                        (
                            MAX_DELIVERY_COUNT_EXCEEDED,
                            f"delivered {count} times, the subscription allows {max_count}",
                            seq,
                        ),
                    )
                    continue
                token = uuid.uuid4().hex
                until = now + lock_duration
                c.execute(
                    "UPDATE messages SET delivery_count = ?, lock_token = ?, locked_until = ?"
                    " WHERE seq = ?",
                    (count + 1, token, until, seq),
                )
                out.append(
                    ReceivedMessage(
                        topic=topic,
                        subscription=subscription,
                        message_id=message_id,
                        body=bytes(body),
                        properties=json.loads(props),
                        delivery_count=count + 1,
                        lock_token=token,
                        locked_until=_dt(until),
                        enqueued_at=_dt(enqueued),
                        sequence_number=seq,
                    )
                )
        return out

    @staticmethod
    def _unlock(c: sqlite3.Connection, got: list[ReceivedMessage]) -> None:
        """Undo a lock batch whose receiver was cancelled: as if it had never been received."""
        c.executemany(
            "UPDATE messages SET lock_token = NULL, locked_until = 0,"
            " delivery_count = max(delivery_count - 1, 0) WHERE lock_token = ?",
            [(m.lock_token,) for m in got],
        )

    def _locked_row(self, c: sqlite3.Connection, message: ReceivedMessage) -> tuple[Any, ...]:
        row = c.execute(
            "SELECT m.seq, m.delivery_count, s.max_delivery_count, s.lock_duration, m.locked_until"
            " FROM messages m JOIN subscriptions s ON s.topic = m.topic AND s.name = m.subscription"
            " WHERE m.lock_token = ?",
            (message.lock_token,),
        ).fetchone()
        if row is None or float(row[4]) <= _ts(self._clock.now()):
            raise errors.LockLostError(
                f"lock on message {message.message_id!r} in {message.topic}/{message.subscription}"
                " expired or was settled; the message will be delivered again"
            )
        return tuple(row)

    async def renew_lock(self, message: ReceivedMessage) -> datetime:
        """Extend the message's lock by the subscription's lock duration."""

        def write(c: sqlite3.Connection) -> datetime:
            seq, _, _, lock_duration, _ = self._locked_row(c, message)
            until = _ts(self._clock.now()) + float(lock_duration)
            c.execute("UPDATE messages SET locked_until = ? WHERE seq = ?", (until, seq))
            return _dt(until)

        return await self._db.write(write)

    async def complete(self, message: ReceivedMessage) -> None:
        """Remove the message."""

        def write(c: sqlite3.Connection) -> None:
            seq = self._locked_row(c, message)[0]
            c.execute("DELETE FROM messages WHERE seq = ?", (seq,))

        await self._db.write(write)

    async def abandon(self, message: ReceivedMessage) -> None:
        """Release the lock; dead-letter at once if no delivery is left."""

        def write(c: sqlite3.Connection) -> None:
            seq, count, max_count, _, _ = self._locked_row(c, message)
            c.execute(
                "UPDATE messages SET lock_token = NULL, locked_until = 0 WHERE seq = ?", (seq,)
            )
            if int(count) >= int(max_count):
                c.execute(
                    "UPDATE messages SET dead = 1, dl_reason = ?, dl_description = ? WHERE seq = ?",
                    (
                        MAX_DELIVERY_COUNT_EXCEEDED,
                        f"delivered {count} times, the subscription allows {max_count}",
                        seq,
                    ),
                )

        await self._db.write(write)
        self._wake(message.topic)

    async def dead_letter(
        self, message: ReceivedMessage, *, reason: str, description: str = ""
    ) -> None:
        """Move the message to the dead-letter queue with a reason."""

        def write(c: sqlite3.Connection) -> None:
            seq = self._locked_row(c, message)[0]
            c.execute(
                "UPDATE messages SET dead = 1, lock_token = NULL, locked_until = 0,"
                " dl_reason = ?, dl_description = ? WHERE seq = ?",
                (reason, description, seq),
            )

        await self._db.write(write)

    async def peek(
        self, topic: str, subscription: str, *, max_messages: int = 10, dead_letter: bool = False
    ) -> list[PeekedMessage]:
        """Return messages without locking them, oldest first."""

        def read(c: sqlite3.Connection) -> list[PeekedMessage]:
            rows = c.execute(
                "SELECT seq, message_id, body, properties, delivery_count, enqueued_at, dl_reason,"
                " dl_description FROM messages WHERE topic = ? AND subscription = ? AND dead = ?"
                " ORDER BY seq LIMIT ?",
                (topic, subscription, int(dead_letter), max_messages),
            ).fetchall()
            return [
                PeekedMessage(
                    message_id=r[1],
                    body=bytes(r[2]),
                    properties=json.loads(r[3]),
                    delivery_count=r[4],
                    enqueued_at=_dt(r[5]),
                    sequence_number=r[0],
                    dead_letter_reason=r[6],
                    dead_letter_description=r[7],
                )
                for r in rows
            ]

        return await self._db.query(read)

    async def counts(self, topic: str, subscription: str) -> SubscriptionCounts:
        """Return how many messages the subscription holds, by kind."""
        now = _ts(self._clock.now())

        def read(c: sqlite3.Connection) -> SubscriptionCounts:
            row = c.execute(
                "SELECT coalesce(sum(dead = 0 AND visible_at <= ?), 0), coalesce(sum(dead = 1), 0),"
                " coalesce(sum(dead = 0 AND visible_at > ?), 0)"
                " FROM messages WHERE topic = ? AND subscription = ?",
                (now, now, topic, subscription),
            ).fetchone()
            return SubscriptionCounts(active=row[0], dead_lettered=row[1], scheduled=row[2])

        return await self._db.query(read)

    async def aclose(self) -> None:
        """Close the database; idempotent."""
        poller, self._poller = self._poller, None
        if poller is not None and poller.get_loop() is asyncio.get_running_loop():
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        await self._db.aclose()
