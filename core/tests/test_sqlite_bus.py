"""The SQLite EventBus passes the EventBus contract, also across processes."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ion.core import errors
from ion.core.backends.sqlite.bus import SqliteEventBus
from ion.core.ports.bus import EventBus, OutgoingMessage, SubscriptionOptions
from ion.core.testing.bus_contract import EventBusContract


class TestSqliteEventBus(EventBusContract):
    lock_duration = timedelta(milliseconds=400)

    @pytest.fixture
    async def bus(self, tmp_path: Path) -> AsyncIterator[EventBus]:
        b = SqliteEventBus(tmp_path / "bus.db")
        yield b
        await b.aclose()


# --- a cancelled receive leaves nothing locked -----------------------------------------------
#
# The dispatcher cancels its receive when it stops. A receive cancelled while its lock
# transaction waits for the database, runs, or has just committed must not leave messages
# locked by nobody (invisible for the whole lock duration).

LONG_LOCK = SubscriptionOptions(max_delivery_count=5, lock_duration=timedelta(seconds=60))


@pytest.fixture
async def one_message(tmp_path: Path) -> AsyncIterator[tuple[SqliteEventBus, str, str]]:
    bus = SqliteEventBus(tmp_path / "bus.db")
    await bus.ensure_subscription("t", "t_a", LONG_LOCK)
    await bus.publish("t", [OutgoingMessage(body=b"x", message_id="only")])
    yield bus, "t", "t_a"
    await bus.aclose()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled(), f"the receive finished instead: {task.result()!r}"


async def _receivable_again(bus: SqliteEventBus, topic: str, sub: str) -> None:
    """The message is there for the next receiver at once, as if never received."""
    got = await bus.receive(topic, sub, max_messages=5, max_wait=timedelta(seconds=3))
    assert [(m.message_id, m.delivery_count) for m in got] == [("only", 1)], (
        "the cancelled receive left the message locked by nobody"
    )
    await bus.complete(got[0])


async def test_a_receive_cancelled_while_waiting_for_the_write_lock_locks_nothing(
    one_message: tuple[SqliteEventBus, str, str], tmp_path: Path
) -> None:
    bus, topic, sub = one_message
    other = sqlite3.connect(tmp_path / "bus.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        task = asyncio.create_task(bus.receive(topic, sub, max_wait=timedelta(seconds=5)))
        await asyncio.sleep(0.3)  # the lock transaction waits in BEGIN IMMEDIATE
        await _cancel(task)
        other.execute("ROLLBACK")
    finally:
        other.close()
    await _receivable_again(bus, topic, sub)


async def test_a_receive_cancelled_mid_transaction_locks_nothing(
    one_message: tuple[SqliteEventBus, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, topic, sub = one_message
    locked, go_on = threading.Event(), threading.Event()
    original = bus._lock_batch

    def slow_lock_batch(*args: Any) -> Any:
        out = original(*args)  # the rows are locked inside the open transaction
        locked.set()
        go_on.wait(10)
        return out

    monkeypatch.setattr(bus, "_lock_batch", slow_lock_batch)
    monkeypatch.setattr(bus._db, "_inline_group", lambda writes: None)  # on the worker thread
    task = asyncio.create_task(bus.receive(topic, sub, max_wait=timedelta(seconds=5)))
    assert await asyncio.to_thread(locked.wait, 10)
    await _cancel(task)
    go_on.set()
    monkeypatch.setattr(bus, "_lock_batch", original)
    await _receivable_again(bus, topic, sub)


async def test_a_receive_cancelled_just_after_its_commit_releases_its_locks(
    one_message: tuple[SqliteEventBus, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, topic, sub = one_message
    worker = bus._db
    committed, go_on = threading.Event(), threading.Event()
    original = worker._run_group

    def slow_run_group(*args: Any) -> Any:
        out = original(*args)  # committed; the result is not back on the event loop yet
        committed.set()
        go_on.wait(10)
        return out

    monkeypatch.setattr(worker, "_run_group", slow_run_group)
    monkeypatch.setattr(worker, "_inline_group", lambda writes: None)  # on the worker thread
    task = asyncio.create_task(bus.receive(topic, sub, max_wait=timedelta(seconds=5)))
    assert await asyncio.to_thread(committed.wait, 10)
    await _cancel(task)
    monkeypatch.setattr(worker, "_run_group", original)
    go_on.set()
    await _receivable_again(bus, topic, sub)


async def test_a_receive_cancelled_after_its_inline_commit_before_it_resumes_releases_its_locks(
    one_message: tuple[SqliteEventBus, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, topic, sub = one_message
    worker = bus._db
    original = worker._inline_group
    task: asyncio.Task[Any] | None = None

    def inline_then_cancel(writes: Any) -> Any:
        out = original(writes)
        assert out is not None, "the lock transaction should have run inline"
        assert task is not None
        # Runs before the receive resumes: its result is set, then it is cancelled.
        asyncio.get_running_loop().call_soon(task.cancel)
        return out

    monkeypatch.setattr(worker, "_inline_group", inline_then_cancel)
    task = asyncio.create_task(bus.receive(topic, sub, max_wait=timedelta(seconds=5)))
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled(), f"the receive finished instead: {task.result()!r}"
    monkeypatch.setattr(worker, "_inline_group", original)
    await _receivable_again(bus, topic, sub)


async def test_a_receive_cancelled_while_waiting_for_messages_takes_none_later(
    tmp_path: Path,
) -> None:
    async with SqliteEventBus(tmp_path / "bus.db") as bus:
        await bus.ensure_subscription("t", "t_a", LONG_LOCK)
        task = asyncio.create_task(bus.receive("t", "t_a", max_wait=timedelta(seconds=5)))
        await asyncio.sleep(0.2)
        await _cancel(task)
        await bus.publish("t", [OutgoingMessage(body=b"x", message_id="only")])
        await _receivable_again(bus, "t", "t_a")


# --- a publish hands its message to a receiver of this process waiting for it -------------------


@pytest.fixture
async def empty_bus(tmp_path: Path) -> AsyncIterator[SqliteEventBus]:
    bus = SqliteEventBus(tmp_path / "bus.db")
    await bus.ensure_subscription("t", "t_a", LONG_LOCK)
    yield bus
    await bus.aclose()


async def _waiting(bus: SqliteEventBus) -> None:
    while not bus._waiters:
        await asyncio.sleep(0.001)


async def test_a_waiting_receiver_is_handed_the_message_as_a_first_delivery(
    empty_bus: SqliteEventBus,
) -> None:
    bus = empty_bus
    receivers = [
        asyncio.create_task(bus.receive("t", "t_a", max_wait=timedelta(seconds=5)))
        for _ in range(2)
    ]
    await _waiting(bus)
    await bus.publish("t", [OutgoingMessage(body=b"x", message_id="m1")])
    done, pending = await asyncio.wait(receivers, timeout=1, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 1, "one competing receiver gets it"
    got = done.pop().result()
    assert [(m.message_id, m.delivery_count) for m in got] == [("m1", 1)]
    await bus.renew_lock(got[0])  # locked for its receiver, as a receive locks it
    await bus.complete(got[0])
    for task in pending:
        await _cancel(task)
    assert (await bus.counts("t", "t_a")).active == 0


async def test_a_message_handed_to_a_receiver_cancelled_meanwhile_is_released(
    empty_bus: SqliteEventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = empty_bus
    worker = bus._db
    original = worker._inline_group
    task = asyncio.create_task(bus.receive("t", "t_a", max_wait=timedelta(seconds=5)))
    await _waiting(bus)

    def publish_then_cancel(writes: Any) -> Any:
        out = original(writes)  # the message is committed locked for the waiting receiver...
        asyncio.get_running_loop().call_soon(task.cancel)  # ...which is cancelled before it hears
        return out

    monkeypatch.setattr(worker, "_inline_group", publish_then_cancel)
    await bus.publish("t", [OutgoingMessage(body=b"x", message_id="only")])
    monkeypatch.setattr(worker, "_inline_group", original)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    await _receivable_again(bus, "t", "t_a")


async def test_a_message_handed_over_just_before_its_receiver_is_cancelled_is_released(
    empty_bus: SqliteEventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = empty_bus
    task = asyncio.create_task(bus.receive("t", "t_a", max_wait=timedelta(seconds=5)))
    await _waiting(bus)
    wake = bus._wake

    def cancel_then_wake(topic: str) -> None:
        task.cancel()  # the hand-off is set, the receiver has not resumed yet
        wake(topic)

    monkeypatch.setattr(bus, "_wake", cancel_then_wake)
    await bus.publish("t", [OutgoingMessage(body=b"x", message_id="only")])
    monkeypatch.setattr(bus, "_wake", wake)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    await _receivable_again(bus, "t", "t_a")


# --- receivers waiting for what another process does ------------------------------------------
#
# A second bus on the same file is what another process is: its publishes wake nobody here, so
# only the poller (one read for every waiting subscription) finds them.


async def test_waiting_receivers_find_what_another_process_publishes(tmp_path: Path) -> None:
    async with (
        SqliteEventBus(tmp_path / "bus.db") as here,
        SqliteEventBus(tmp_path / "bus.db") as there,
    ):
        for topic in ("t1", "t2", "t3"):
            await here.ensure_subscription(topic, f"{topic}_a", LONG_LOCK)
        waiting = {
            topic: asyncio.create_task(
                here.receive(topic, f"{topic}_a", max_wait=timedelta(seconds=10))
            )
            for topic in ("t1", "t2", "t3")
        }
        await asyncio.sleep(0.3)  # all three wait, and the poller has slowed down
        await there.publish("t2", [OutgoingMessage(body=b"x", message_id="m2")])
        got = await asyncio.wait_for(waiting["t2"], timeout=2)
        assert [(m.message_id, m.delivery_count) for m in got] == [("m2", 1)]
        assert not waiting["t1"].done() and not waiting["t3"].done()
        await here.complete(got[0])
        await there.publish("t3", [OutgoingMessage(body=b"y", message_id="m3")])
        got = await asyncio.wait_for(waiting["t3"], timeout=2)
        assert [m.message_id for m in got] == ["m3"]
        await here.complete(got[0])
        await _cancel(waiting["t1"])
        assert (await here.counts("t1", "t1_a")).active == 0


async def test_a_waiting_receiver_whose_subscription_another_process_deletes_is_told(
    tmp_path: Path,
) -> None:
    async with (
        SqliteEventBus(tmp_path / "bus.db") as here,
        SqliteEventBus(tmp_path / "bus.db") as there,
    ):
        await here.ensure_subscription("t", "t_a", LONG_LOCK)
        receiving = asyncio.create_task(here.receive("t", "t_a", max_wait=timedelta(seconds=10)))
        await asyncio.sleep(0.2)
        await there.delete_subscription("t", "t_a")
        with pytest.raises(errors.NotFoundError):
            await asyncio.wait_for(receiving, timeout=2)


async def test_many_idle_receivers_are_polled_in_one_read(tmp_path: Path) -> None:
    """Idle subscriptions cost the poller one statement per poll, not a read each."""
    reads: list[int] = []
    async with SqliteEventBus(tmp_path / "bus.db") as bus:
        topics = [f"t{i}" for i in range(40)]
        for topic in topics:
            await bus.ensure_subscription(topic, f"{topic}_a", LONG_LOCK)
        original = bus._ready_keys

        def counting(c: sqlite3.Connection, *, keys: list[tuple[str, str, bool]]) -> Any:
            reads.append(len(keys))
            return original(c, keys=keys)

        bus._ready_keys = counting  # type: ignore[method-assign]
        waiting = [
            asyncio.create_task(bus.receive(t, f"{t}_a", max_wait=timedelta(seconds=10)))
            for t in topics
        ]
        await asyncio.sleep(0.5)
        for task in waiting:
            await _cancel(task)
    assert reads, "the poller never ran"
    assert max(reads) == len(topics), "one poll looks at every waiting subscription"
    assert len(reads) <= 60, f"{len(reads)} polls in 0.5 s: it does not slow down when idle"


def test_a_bus_used_by_one_event_loop_after_another_still_polls(tmp_path: Path) -> None:
    here = SqliteEventBus(tmp_path / "bus.db")

    async def wait_in_vain() -> None:
        await here.ensure_subscription("t", "t_a", LONG_LOCK)
        assert await here.receive("t", "t_a", max_wait=timedelta(milliseconds=200)) == []

    async def find_the_other_process_s() -> list[str]:
        async with SqliteEventBus(tmp_path / "bus.db") as there:
            receiving = asyncio.create_task(
                here.receive("t", "t_a", max_wait=timedelta(seconds=10))
            )
            await asyncio.sleep(0.2)
            await there.publish("t", [OutgoingMessage(body=b"x", message_id="late")])
            got = await asyncio.wait_for(receiving, timeout=2)
            await here.complete(got[0])
            await here.aclose()
            return [m.message_id for m in got]

    asyncio.run(wait_in_vain())  # its poller stays with this loop, which is closed next
    assert asyncio.run(find_the_other_process_s()) == ["late"]
