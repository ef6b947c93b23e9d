"""The EventBus contract: every backend's test module subclasses `EventBusContract`.

A subclass provides the `bus` fixture (a fresh, empty bus) and may override `lock_duration`
(the shortest lock its backend allows) so lock-expiry tests stay quick.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from ion.core import errors
from ion.core.ports.bus import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    EventBus,
    OutgoingMessage,
    SubscriptionOptions,
)

WAIT = timedelta(seconds=5)
SHORT = timedelta(milliseconds=300)


def _msg(body: str, message_id: str | None = None, **kw: object) -> OutgoingMessage:
    return OutgoingMessage(body=body.encode(), message_id=message_id or uuid.uuid4().hex, **kw)  # type: ignore[arg-type]  # test helper passes dataclass options through


class EventBusContract:
    """Sentences of the delivery semantics, one test each."""

    lock_duration: timedelta = timedelta(seconds=1)

    @pytest.fixture
    def names(self) -> tuple[str, str, str]:
        """A fresh topic and two subscription names per test."""
        tag = uuid.uuid4().hex[:8]
        return f"t-{tag}", f"t-{tag}_alpha", f"t-{tag}_beta"

    async def _sub(
        self, bus: EventBus, topic: str, sub: str, *, max_delivery_count: int = 5
    ) -> None:
        await bus.ensure_subscription(
            topic,
            sub,
            SubscriptionOptions(
                max_delivery_count=max_delivery_count, lock_duration=self.lock_duration
            ),
        )

    async def test_publish_to_missing_topic_is_not_found(self, bus: EventBus) -> None:
        with pytest.raises(errors.NotFoundError):
            await bus.publish(f"missing-{uuid.uuid4().hex[:8]}", [_msg("x")])

    async def test_every_subscription_sees_every_message(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, b = names
        await self._sub(bus, topic, a)
        await self._sub(bus, topic, b)
        await bus.publish(topic, [_msg("one", "m1"), _msg("two", "m2")])
        for sub in (a, b):
            got = await bus.receive(topic, sub, max_messages=10, max_wait=WAIT)
            while len(got) < 2:
                more = await bus.receive(topic, sub, max_messages=10, max_wait=WAIT)
                assert more, f"{sub} got only {len(got)} of 2 messages"
                got += more
            assert sorted(m.body for m in got) == [b"one", b"two"]
            assert {m.message_id for m in got} == {"m1", "m2"}
            for m in got:
                assert m.delivery_count == 1
                await bus.complete(m)

    async def test_receivers_on_one_subscription_compete(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.publish(topic, [_msg(f"m{i}") for i in range(6)])
        first, second = await asyncio.gather(
            bus.receive(topic, a, max_messages=3, max_wait=WAIT),
            bus.receive(topic, a, max_messages=3, max_wait=WAIT),
        )
        seen = [m.message_id for m in first + second]
        assert len(seen) == len(set(seen)), "a message was delivered to two receivers at once"

    async def test_complete_removes_the_message(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.publish(topic, [_msg("x")])
        [m] = await bus.receive(topic, a, max_wait=WAIT)
        await bus.complete(m)
        assert await bus.receive(topic, a, max_wait=SHORT) == []
        assert (await bus.counts(topic, a)).active == 0

    async def test_abandon_redelivers_with_a_higher_delivery_count(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.publish(topic, [_msg("x", "again")])
        [m] = await bus.receive(topic, a, max_wait=WAIT)
        assert m.delivery_count == 1
        await bus.abandon(m)
        [m2] = await bus.receive(topic, a, max_wait=WAIT)
        assert m2.message_id == "again"
        assert m2.delivery_count == 2
        await bus.complete(m2)

    async def test_settling_with_a_stale_lock_raises_lock_lost(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.publish(topic, [_msg("x")])
        [m] = await bus.receive(topic, a, max_wait=WAIT)
        await bus.complete(m)
        with pytest.raises(errors.LockLostError):
            await bus.complete(m)

    async def test_an_expired_lock_makes_the_message_available_again(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.publish(topic, [_msg("x", "slow")])
        [m] = await bus.receive(topic, a, max_wait=WAIT)
        wait = self.lock_duration + timedelta(seconds=5)
        [again] = await bus.receive(topic, a, max_wait=wait)
        assert again.message_id == "slow"
        assert again.delivery_count == 2
        with pytest.raises(errors.LockLostError):
            await bus.complete(m)
        await bus.complete(again)

    async def test_renewing_a_lock_keeps_the_message_from_others(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.publish(topic, [_msg("x")])
        [m] = await bus.receive(topic, a, max_wait=WAIT)
        loop = asyncio.get_running_loop()
        end = loop.time() + self.lock_duration.total_seconds() * 2
        while loop.time() < end:
            until = await bus.renew_lock(m)
            assert until > m.enqueued_at
            assert await bus.receive(topic, a, max_wait=self.lock_duration / 4) == []
        await bus.complete(m)

    async def test_dead_letter_keeps_the_reason(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.publish(topic, [_msg("bad", "poison")])
        [m] = await bus.receive(topic, a, max_wait=WAIT)
        await bus.dead_letter(m, reason="NotJson", description="body is not JSON")
        assert await bus.receive(topic, a, max_wait=SHORT) == []
        [dl] = await bus.peek(topic, a, dead_letter=True)
        assert (dl.message_id, dl.dead_letter_reason) == ("poison", "NotJson")
        assert dl.dead_letter_description == "body is not JSON"
        assert dl.body == b"bad"
        counts = await bus.counts(topic, a)
        assert (counts.active, counts.dead_lettered) == (0, 1)

    async def test_exceeding_max_delivery_count_dead_letters(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a, max_delivery_count=2)
        await bus.publish(topic, [_msg("x", "flaky")])
        for expected in (1, 2):
            [m] = await bus.receive(topic, a, max_wait=WAIT)
            assert m.delivery_count == expected
            await bus.abandon(m)
        assert await bus.receive(topic, a, max_wait=SHORT) == []
        [dl] = await bus.peek(topic, a, dead_letter=True)
        assert dl.message_id == "flaky"
        assert dl.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED

    async def test_dead_letters_can_be_received_for_replay(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.publish(topic, [_msg("x", "dl")])
        [m] = await bus.receive(topic, a, max_wait=WAIT)
        await bus.dead_letter(m, reason="ModuleFailed")
        [d] = await bus.receive_dead_letters(topic, a, max_wait=WAIT)
        assert d.message_id == "dl"
        await bus.complete(d)
        assert await bus.peek(topic, a, dead_letter=True) == []

    async def test_duplicate_message_ids_are_dropped(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.publish(topic, [_msg("first", "same-id")])
        await bus.publish(topic, [_msg("second", "same-id")])
        got = await bus.receive(topic, a, max_messages=10, max_wait=WAIT)
        more = await bus.receive(topic, a, max_messages=10, max_wait=SHORT)
        assert [m.body for m in got + more] == [b"first"]

    async def test_scheduled_messages_wait_until_their_time(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        from datetime import UTC, datetime

        at = datetime.now(UTC) + timedelta(seconds=1.5)
        await bus.publish(topic, [_msg("later", scheduled_at=at)])
        assert await bus.receive(topic, a, max_wait=timedelta(milliseconds=500)) == []
        assert (await bus.counts(topic, a)).scheduled == 1
        [m] = await bus.receive(topic, a, max_wait=timedelta(seconds=10))
        assert m.body == b"later"
        assert datetime.now(UTC) >= at - timedelta(milliseconds=100)
        await bus.complete(m)

    async def test_to_subscription_reaches_only_that_subscription(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, b = names
        await self._sub(bus, topic, a)
        await self._sub(bus, topic, b)
        await bus.publish(topic, [_msg("retry", to_subscription=b)])
        assert await bus.receive(topic, a, max_wait=SHORT) == []
        [m] = await bus.receive(topic, b, max_wait=WAIT)
        assert m.body == b"retry"
        await bus.complete(m)

    async def test_properties_round_trip_as_strings(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        props = {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "ion-attempt": "2",
        }
        await bus.publish(topic, [_msg("x", properties=props)])
        [m] = await bus.receive(topic, a, max_wait=WAIT)
        assert {k: m.properties[k] for k in props} == props
        await bus.complete(m)

    async def test_peek_does_not_lock(self, bus: EventBus, names: tuple[str, str, str]) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.publish(topic, [_msg("x", "peeked")])
        [p] = await bus.peek(topic, a)
        assert p.message_id == "peeked"
        [m] = await bus.receive(topic, a, max_wait=WAIT)
        assert m.delivery_count == 1
        await bus.complete(m)

    async def test_receive_from_missing_subscription_is_not_found(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await bus.ensure_topic(topic)
        with pytest.raises(errors.NotFoundError):
            await bus.receive(topic, a, max_wait=SHORT)

    async def test_deleting_a_subscription_is_idempotent(
        self, bus: EventBus, names: tuple[str, str, str]
    ) -> None:
        topic, a, _ = names
        await self._sub(bus, topic, a)
        await bus.delete_subscription(topic, a)
        await bus.delete_subscription(topic, a)
        with pytest.raises(errors.NotFoundError):
            await bus.receive(topic, a, max_wait=SHORT)
