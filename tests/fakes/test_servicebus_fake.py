"""End-to-end tests of the fake Service Bus with the real azure-servicebus SDK (aio).

Every SDK call is bounded by ``asyncio.timeout``: the SDK retries and waits for minutes on
protocol surprises. Only lock-expiry, TTL and scheduling tests wait on the clock, with 1-2 s
durations.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import (
    MessageLockLostError,
    ServiceBusAuthenticationError,
    ServiceBusError,
)
from azure.servicebus.management import SqlRuleFilter

from tests.fakes.servicebus import FakeServiceBus, UnsupportedFilter, parse_sql_filter

T = 10.0  # bound for every block of SDK calls
ION_TO = '"ion-to" IS NULL OR "ion-to" = \'{}\''


@pytest.fixture
async def client(fake_servicebus: FakeServiceBus) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(
        fake_servicebus.connection_string, retry_total=1, retry_backoff_factor=0.1
    ) as sb_client:
        yield sb_client


@pytest.fixture
def topic(fake_servicebus: FakeServiceBus) -> str:
    fake_servicebus.create_topic("jobs")
    fake_servicebus.create_subscription("jobs", "dispatcher", lock_duration=30)
    return "jobs"


async def send(client: ServiceBusClient, topic: str, *messages: ServiceBusMessage) -> None:
    async with asyncio.timeout(T), client.get_topic_sender(topic) as sender:
        await sender.send_messages(list(messages) if len(messages) > 1 else messages[0])


async def receive(
    receiver: ServiceBusReceiver, count: int, wait: float = 2.0
) -> list[ServiceBusReceivedMessage]:
    """Receive until ``count`` messages arrived or ``wait`` seconds passed."""
    got: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + wait
    async with asyncio.timeout(wait + T):
        while len(got) < count and time.monotonic() < deadline:
            remaining = max(deadline - time.monotonic(), 0.2)
            got += await receiver.receive_messages(
                max_message_count=count - len(got), max_wait_time=remaining
            )
    return got


def body(message: ServiceBusReceivedMessage) -> bytes:
    return b"".join(message.body)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# -- basics ---------------------------------------------------------------------------------


async def test_send_receive_complete(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient, topic: str
) -> None:
    before = datetime.datetime.now(datetime.UTC)
    await send(client, topic, ServiceBusMessage(b"hello", message_id="m-1", subject="jobs"))
    async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
        [message] = await receive(receiver, 1)
        assert body(message) == b"hello"
        assert message.message_id == "m-1"
        assert message.subject == "jobs"
        assert message.delivery_count == 0  # first delivery, as the Python SDK reports it
        assert message.sequence_number == 1
        assert message.enqueued_time_utc is not None
        assert message.enqueued_time_utc >= before - datetime.timedelta(seconds=1)
        assert message.locked_until_utc is not None
        assert message.locked_until_utc > datetime.datetime.now(datetime.UTC)
        assert isinstance(message.lock_token, uuid.UUID)
        assert fake_servicebus.counts(topic, "dispatcher").locked == 1
        async with asyncio.timeout(T):
            await receiver.complete_message(message)
        assert await receive(receiver, 1, wait=0.3) == []
    counts = fake_servicebus.counts(topic, "dispatcher")
    assert (counts.active, counts.dead_letter) == (0, 0)


async def test_batch_sends_are_split_into_messages(client: ServiceBusClient, topic: str) -> None:
    await send(client, topic, *(ServiceBusMessage(f"list-{i}") for i in range(3)))
    async with asyncio.timeout(T), client.get_topic_sender(topic) as sender:
        batch = await sender.create_message_batch()
        for i in range(3):
            batch.add_message(ServiceBusMessage(f"batch-{i}"))
        await sender.send_messages(batch)
    async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
        messages = await receive(receiver, 6)
        assert sorted(body(m) for m in messages) == sorted(
            [f"list-{i}".encode() for i in range(3)] + [f"batch-{i}".encode() for i in range(3)]
        )
        assert len({m.sequence_number for m in messages}) == 6


async def test_application_property_keys_and_values_come_back_as_bytes(
    client: ServiceBusClient, topic: str
) -> None:
    """Observed SDK behaviour (7.15, pyamqp): AMQP strings decode to ``bytes``.

    Keys *and* string values of ``application_properties`` on a received message are bytes;
    numbers stay numbers. Adapters must normalise keys (and string values) to ``str``.
    """
    await send(
        client,
        topic,
        ServiceBusMessage(b"x", application_properties={"tenant": "t1", "attempt": 3}),
    )
    async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
        [message] = await receive(receiver, 1)
        assert message.application_properties == {b"tenant": b"t1", b"attempt": 3}


async def test_unknown_entities_are_refused_and_never_created(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient
) -> None:
    """Like the service, ``$cbs`` put-token answers 404 for an unknown entity.

    The SDK (7.15) reports that as ``ServiceBusAuthenticationError`` ("amqp:client-error"),
    not ``MessagingEntityNotFoundError``: the 404 and its description are dropped.
    """
    with pytest.raises(ServiceBusAuthenticationError):
        await send(client, "missing", ServiceBusMessage(b"x"))
    fake_servicebus.create_topic("jobs")
    with pytest.raises(ServiceBusAuthenticationError):
        async with asyncio.timeout(T), client.get_subscription_receiver("jobs", "nobody") as r:
            await r.receive_messages(max_wait_time=0.5)
    assert fake_servicebus.topic_names() == ["jobs"]
    assert fake_servicebus.subscription_names("jobs") == []


async def test_deleting_a_topic_detaches_its_open_links(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient, topic: str
) -> None:
    """Open senders and receivers fail fast (no SDK hang) once their entity is deleted."""
    async with asyncio.timeout(T), client.get_topic_sender(topic) as sender:
        await sender.send_messages(ServiceBusMessage(b"before"))
        async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
            assert len(await receiver.receive_messages(max_wait_time=2)) == 1
            fake_servicebus.delete_topic(topic)
            with pytest.raises(ServiceBusError):
                await sender.send_messages(ServiceBusMessage(b"after"))
            with pytest.raises(ServiceBusError):
                await receiver.receive_messages(max_wait_time=1)


async def test_addresses_are_case_insensitive(client: ServiceBusClient, topic: str) -> None:
    await send(client, "JOBS", ServiceBusMessage(b"upper"))
    async with client.get_subscription_receiver("Jobs", "DISPATCHER") as receiver:
        [message] = await receive(receiver, 1)
        assert body(message) == b"upper"


# -- settlement -------------------------------------------------------------------------------


async def test_abandon_redelivers_with_higher_delivery_count(
    client: ServiceBusClient, topic: str
) -> None:
    await send(client, topic, ServiceBusMessage(b"retry-me"))
    async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
        [first] = await receive(receiver, 1)
        async with asyncio.timeout(T):
            await receiver.abandon_message(first)
        [second] = await receive(receiver, 1)
        assert body(second) == b"retry-me"
        assert (first.delivery_count, second.delivery_count) == (0, 1)
        assert second.sequence_number == first.sequence_number
        assert second.lock_token != first.lock_token
        async with asyncio.timeout(T):
            await receiver.complete_message(second)


async def test_dead_letter_with_reason_lands_in_dead_letter_queue(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient, topic: str
) -> None:
    await send(client, topic, ServiceBusMessage(b"poison", message_id="p-1"))
    async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
        [message] = await receive(receiver, 1)
        async with asyncio.timeout(T):
            await receiver.dead_letter_message(
                message, reason="PoisonMessage", error_description="not JSON"
            )
        assert await receive(receiver, 1, wait=0.3) == []
    assert fake_servicebus.counts(topic, "dispatcher").dead_letter == 1
    async with client.get_subscription_receiver(
        topic, "dispatcher", sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dead:
        [letter] = await receive(dead, 1)
        assert body(letter) == b"poison"
        assert letter.message_id == "p-1"
        assert letter.dead_letter_reason == "PoisonMessage"
        assert letter.dead_letter_error_description == "not JSON"
        assert letter.application_properties is not None
        assert letter.application_properties[b"DeadLetterReason"] == b"PoisonMessage"
        async with asyncio.timeout(T):
            await dead.complete_message(letter)
    assert fake_servicebus.counts(topic, "dispatcher").dead_letter == 0


async def test_max_delivery_count_dead_letters_automatically(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient
) -> None:
    fake_servicebus.create_topic("jobs")
    fake_servicebus.create_subscription("jobs", "d", max_delivery_count=3)
    await send(client, "jobs", ServiceBusMessage(b"doomed"))
    seen = []
    async with client.get_subscription_receiver("jobs", "d") as receiver:
        for _ in range(3):
            [message] = await receive(receiver, 1)
            seen.append(message.delivery_count)
            async with asyncio.timeout(T):
                await receiver.abandon_message(message)
        assert await receive(receiver, 1, wait=0.3) == []
    assert seen == [0, 1, 2]
    async with client.get_subscription_receiver(
        "jobs", "d", sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dead:
        [letter] = await receive(dead, 1)
        assert body(letter) == b"doomed"
        assert letter.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert letter.dead_letter_error_description == (
            "Message could not be consumed after 3 delivery attempts."
        )


async def test_settlement_through_management_link(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient, topic: str
) -> None:
    """``com.microsoft:update-disposition``: the SDK's fallback when link settlement fails."""
    await send(client, topic, *(ServiceBusMessage(f"m{i}") for i in range(3)))
    async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
        messages = sorted(await receive(receiver, 3), key=lambda m: m.sequence_number)
        done, retry, poison = messages
        async with asyncio.timeout(T):
            await receiver._settle_message_via_mgmt_link("completed", [done.lock_token])
            await receiver._settle_message_via_mgmt_link("abandoned", [retry.lock_token])
            await receiver._settle_message_via_mgmt_link(
                "suspended",
                [poison.lock_token],
                dead_letter_details={"deadletter-reason": "r", "deadletter-description": "d"},
            )
            with pytest.raises(MessageLockLostError):
                await receiver._settle_message_via_mgmt_link("completed", [done.lock_token])
        [again] = await receive(receiver, 1)
        assert (body(again), again.delivery_count) == (b"m1", 1)
    async with client.get_subscription_receiver(
        topic, "dispatcher", sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dead:
        [letter] = await receive(dead, 1)
        assert (body(letter), letter.dead_letter_reason) == (b"m2", "r")
        assert letter.dead_letter_error_description == "d"


async def test_receive_and_delete_mode(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient, topic: str
) -> None:
    await send(client, topic, ServiceBusMessage(b"once"))
    async with client.get_subscription_receiver(
        topic, "dispatcher", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        [message] = await receive(receiver, 1)
        assert body(message) == b"once"
    assert fake_servicebus.counts(topic, "dispatcher").active == 0


# -- locks ------------------------------------------------------------------------------------


async def test_lock_expiry_redelivers_and_old_lock_is_lost(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient
) -> None:
    fake_servicebus.create_topic("jobs")
    fake_servicebus.create_subscription("jobs", "d", lock_duration=1)
    await send(client, "jobs", ServiceBusMessage(b"slow"))
    async with client.get_subscription_receiver("jobs", "d") as receiver:
        [first] = await receive(receiver, 1)
        assert first.locked_until_utc is not None
        # not redelivered while locked; redelivered once the 1 s lock expired
        [second] = await receive(receiver, 1, wait=4)
        assert datetime.datetime.now(datetime.UTC) >= first.locked_until_utc
        assert (body(second), second.delivery_count) == (b"slow", 1)
        with pytest.raises(MessageLockLostError):
            async with asyncio.timeout(T):
                await receiver.complete_message(first)
        async with asyncio.timeout(T):
            await receiver.complete_message(second)


async def test_renew_lock_extends_the_lock(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient
) -> None:
    fake_servicebus.create_topic("jobs")
    fake_servicebus.create_subscription("jobs", "d", lock_duration=2)
    await send(client, "jobs", ServiceBusMessage(b"long job"))
    async with client.get_subscription_receiver("jobs", "d") as receiver:
        [message] = await receive(receiver, 1)
        original = message.locked_until_utc
        assert original is not None
        await asyncio.sleep(1.0)  # lock time passing is the point of this test
        async with asyncio.timeout(T):
            renewed = await receiver.renew_message_lock(message)
        assert renewed >= original + datetime.timedelta(seconds=0.9)
        # until past the original expiry: still locked, so nothing is redelivered
        while datetime.datetime.now(datetime.UTC) < original + datetime.timedelta(seconds=0.2):
            assert await receive(receiver, 1, wait=0.3) == []
        assert fake_servicebus.counts("jobs", "d").locked == 1
        async with asyncio.timeout(T):
            await receiver.complete_message(message)
    assert fake_servicebus.counts("jobs", "d").active == 0


async def test_renewing_an_expired_lock_fails(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient
) -> None:
    fake_servicebus.create_topic("jobs")
    fake_servicebus.create_subscription("jobs", "d", lock_duration=1)
    await send(client, "jobs", ServiceBusMessage(b"x"))
    async with client.get_subscription_receiver("jobs", "d") as receiver:
        [message] = await receive(receiver, 1)
        await eventually(lambda: fake_servicebus.counts("jobs", "d").locked == 0)
        with pytest.raises(MessageLockLostError):
            async with asyncio.timeout(T):
                await receiver._renew_locks(str(message.lock_token))


# -- scheduling and peeking ---------------------------------------------------------------


async def test_scheduled_message_arrives_not_before_its_time(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient, topic: str
) -> None:
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5)
    async with asyncio.timeout(T), client.get_topic_sender(topic) as sender:
        [keep] = await sender.schedule_messages(ServiceBusMessage(b"later"), at)
        [drop] = await sender.schedule_messages(ServiceBusMessage(b"cancelled"), at)
        await sender.cancel_scheduled_messages(drop)
    assert keep != drop
    assert fake_servicebus.counts(topic, "dispatcher").scheduled == 1
    async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
        [message] = await receive(receiver, 1, wait=5)
        assert datetime.datetime.now(datetime.UTC) >= at
        assert body(message) == b"later"
        assert message.sequence_number == keep
        assert message.scheduled_enqueue_time_utc is not None
        assert await receive(receiver, 1, wait=0.3) == []


async def test_scheduled_enqueue_time_on_a_plain_send_is_honoured(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient, topic: str
) -> None:
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5)
    await send(client, topic, ServiceBusMessage(b"later", scheduled_enqueue_time_utc=at))
    if datetime.datetime.now(datetime.UTC) < at - datetime.timedelta(seconds=0.2):
        counts = fake_servicebus.counts(topic, "dispatcher")
        assert (counts.active, counts.scheduled) == (0, 1)
    async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
        [message] = await receive(receiver, 1, wait=4)
        assert datetime.datetime.now(datetime.UTC) >= at
        assert body(message) == b"later"


async def test_peek_does_not_lock(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient, topic: str
) -> None:
    await send(client, topic, *(ServiceBusMessage(f"p{i}") for i in range(3)))
    async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
        async with asyncio.timeout(T):
            peeked = await receiver.peek_messages(max_message_count=10)
            assert [body(m) for m in peeked] == [b"p0", b"p1", b"p2"]
            assert [m.sequence_number for m in peeked] == [1, 2, 3]
            assert fake_servicebus.counts(topic, "dispatcher").locked == 0
            later = await receiver.peek_messages(max_message_count=10, sequence_number=3)
            assert [body(m) for m in later] == [b"p2"]
            with pytest.raises(ValueError):
                await receiver.complete_message(peeked[0])
        received = await receive(receiver, 3)
        assert [m.delivery_count for m in received] == [0, 0, 0]
        async with asyncio.timeout(T):
            assert await receiver.peek_messages(sequence_number=100) == []


# -- topics: duplicates, fan-out, competition, filters -------------------------------------


async def test_duplicate_detection_drops_repeated_message_ids(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient
) -> None:
    fake_servicebus.create_topic("jobs", requires_duplicate_detection=True)
    fake_servicebus.create_subscription("jobs", "d")
    await send(client, "jobs", ServiceBusMessage(b"first", message_id="same"))
    await send(client, "jobs", ServiceBusMessage(b"again", message_id="same"))
    await send(client, "jobs", ServiceBusMessage(b"other", message_id="different"))
    async with client.get_subscription_receiver("jobs", "d") as receiver:
        messages = await receive(receiver, 3, wait=1)
        assert sorted(body(m) for m in messages) == [b"first", b"other"]


async def test_without_duplicate_detection_repeats_are_delivered(
    client: ServiceBusClient, topic: str
) -> None:
    await send(client, topic, ServiceBusMessage(b"a", message_id="same"))
    await send(client, topic, ServiceBusMessage(b"b", message_id="same"))
    async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
        assert len(await receive(receiver, 2)) == 2


async def test_every_subscription_gets_every_message(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient
) -> None:
    fake_servicebus.create_topic("jobs")
    fake_servicebus.create_subscription("jobs", "resize")
    fake_servicebus.create_subscription("jobs", "classify")
    await send(client, "jobs", *(ServiceBusMessage(f"e{i}") for i in range(4)))
    for name in ("resize", "classify"):
        async with client.get_subscription_receiver("jobs", name) as receiver:
            messages = await receive(receiver, 4)
            assert sorted(body(m) for m in messages) == [b"e0", b"e1", b"e2", b"e3"]


async def test_receivers_on_one_subscription_compete(client: ServiceBusClient, topic: str) -> None:
    await send(client, topic, *(ServiceBusMessage(f"w{i}") for i in range(10)))

    async def worker() -> list[bytes]:
        async with client.get_subscription_receiver(topic, "dispatcher") as receiver:
            messages = await receive(receiver, 5)
            async with asyncio.timeout(T):
                for message in messages:
                    await receiver.complete_message(message)
            return [body(m) for m in messages]

    first, second = await asyncio.gather(worker(), worker())
    assert first and second
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(f"w{i}".encode() for i in range(10))


async def test_ion_to_filter_routes_to_the_named_subscription(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient
) -> None:
    fake_servicebus.create_topic("jobs")
    for name in ("resize", "classify"):
        fake_servicebus.create_subscription("jobs", name, sql_filter=ION_TO.format(name))
    await send(
        client,
        "jobs",
        ServiceBusMessage(b"to-resize", application_properties={"ion-to": "resize"}),
        ServiceBusMessage(b"broadcast"),
    )
    async with client.get_subscription_receiver("jobs", "resize") as receiver:
        assert sorted(body(m) for m in await receive(receiver, 2)) == [b"broadcast", b"to-resize"]
    async with client.get_subscription_receiver("jobs", "classify") as receiver:
        assert [body(m) for m in await receive(receiver, 2, wait=1)] == [b"broadcast"]


def test_only_the_supported_filters_parse() -> None:
    assert parse_sql_filter("1=1").matches({})
    assert not parse_sql_filter("1 = 0").matches({})
    rule = parse_sql_filter("[ion-to] is null or [ion-to] = 'a''b'")
    assert (
        rule.matches({}) and rule.matches({"ion-to": "a'b"}) and not rule.matches({"ion-to": "c"})
    )
    for expression in ("color = 'red'", "\"ion-to\" = 'a'", "1=1 OR 1=0"):
        with pytest.raises(UnsupportedFilter):
            parse_sql_filter(expression)


async def test_message_ttl_dead_letters_on_expiration(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient
) -> None:
    fake_servicebus.create_topic("jobs")
    fake_servicebus.create_subscription(
        "jobs", "d", default_message_time_to_live=0.3, dead_lettering_on_message_expiration=True
    )
    await send(client, "jobs", ServiceBusMessage(b"stale"))
    await eventually(lambda: fake_servicebus.counts("jobs", "d").dead_letter == 1)
    async with client.get_subscription_receiver(
        "jobs", "d", sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dead:
        [letter] = await receive(dead, 1)
        assert letter.dead_letter_reason == "TTLExpiredException"


# -- administration over HTTPS/ATOM ---------------------------------------------------------


async def test_admin_client_manages_entities(
    fake_servicebus: FakeServiceBus, client: ServiceBusClient
) -> None:
    async with fake_servicebus.admin_client() as admin, asyncio.timeout(T):
        created = await admin.create_topic(
            "Events",
            requires_duplicate_detection=True,
            duplicate_detection_history_time_window=datetime.timedelta(minutes=2),
        )
        assert created.requires_duplicate_detection
        assert created.duplicate_detection_history_time_window == datetime.timedelta(minutes=2)
        with pytest.raises(ResourceExistsError):
            await admin.create_topic("events")
        sub = await admin.create_subscription(
            "Events",
            "resize",
            max_delivery_count=4,
            lock_duration=datetime.timedelta(seconds=2),
            default_message_time_to_live=datetime.timedelta(hours=1),
            dead_lettering_on_message_expiration=True,
        )
        assert (sub.max_delivery_count, sub.lock_duration) == (4, datetime.timedelta(seconds=2))
        assert sub.default_message_time_to_live == datetime.timedelta(hours=1)
        assert sub.dead_lettering_on_message_expiration
        rules = [r async for r in admin.list_rules("Events", "resize")]
        assert [(r.name, r.filter.sql_expression) for r in rules] == [("$Default", "1=1")]
        await admin.create_rule(
            "Events", "resize", "ion-to", filter=SqlRuleFilter(ION_TO.format("resize"))
        )
        await admin.delete_rule("Events", "resize", "$Default")
        with pytest.raises(HttpResponseError):
            await admin.create_rule("Events", "resize", "x", filter=SqlRuleFilter("a = 1"))
        assert [t.name async for t in admin.list_topics()] == ["Events"]
        assert [s.name async for s in admin.list_subscriptions("Events")] == ["resize"]
        with pytest.raises(ResourceNotFoundError):
            await admin.get_subscription("Events", "nobody")

    # the entities are live on the AMQP side
    assert fake_servicebus.get_subscription("events", "resize").lock_duration == 2
    await send(client, "Events", ServiceBusMessage(b"a"), ServiceBusMessage(b"b"))
    await send(client, "Events", ServiceBusMessage(b"c", application_properties={"ion-to": "x"}))
    async with client.get_subscription_receiver("Events", "resize") as receiver:
        first, _ = await receive(receiver, 2)
        async with asyncio.timeout(T):
            await receiver.dead_letter_message(first, reason="r")
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
    async with asyncio.timeout(T), client.get_topic_sender("Events") as sender:
        await sender.schedule_messages(ServiceBusMessage(b"later"), at)

    async with fake_servicebus.admin_client() as admin, asyncio.timeout(T):
        runtime = await admin.get_subscription_runtime_properties("Events", "resize")
        assert (runtime.active_message_count, runtime.dead_letter_message_count) == (1, 1)
        assert runtime.total_message_count == 2
        topic_runtime = await admin.get_topic_runtime_properties("Events")
        assert (topic_runtime.scheduled_message_count, topic_runtime.subscription_count) == (1, 1)
        await admin.delete_subscription("Events", "resize")
        await admin.delete_topic("Events")
        with pytest.raises(ResourceNotFoundError):
            await admin.delete_topic("Events")
        assert [t.name async for t in admin.list_topics()] == []


async def test_admin_refuses_what_the_fake_does_not_model(
    fake_servicebus: FakeServiceBus,
) -> None:
    async with fake_servicebus.admin_client() as admin, asyncio.timeout(T):
        with pytest.raises(HttpResponseError):
            await admin.create_queue("q")
        created = await admin.create_topic("t")
        with pytest.raises(HttpResponseError):
            await admin.create_subscription("t", "s", requires_session=True)
        with pytest.raises(HttpResponseError):  # immutable on the service too
            await admin.update_topic(created, requires_duplicate_detection=True)


# -- the sync API ----------------------------------------------------------------------------


@pytest.mark.timeout(30)  # sync SDK calls cannot be bounded by asyncio.timeout
def test_the_sync_client_works_too(fake_servicebus: FakeServiceBus) -> None:
    from azure.servicebus import ServiceBusClient as SyncClient

    fake_servicebus.create_topic("jobs")
    fake_servicebus.create_subscription("jobs", "d")
    with SyncClient.from_connection_string(
        fake_servicebus.connection_string, retry_total=0
    ) as sync_client:
        with sync_client.get_topic_sender("jobs") as sender:
            sender.send_messages([ServiceBusMessage(b"a"), ServiceBusMessage(b"b")], timeout=10)
        with sync_client.get_subscription_receiver("jobs", "d", max_wait_time=2) as receiver:
            messages = []
            for _ in range(3):
                messages += receiver.receive_messages(
                    max_message_count=2 - len(messages), max_wait_time=2
                )
                if len(messages) == 2:
                    break
            assert sorted(body(m) for m in messages) == [b"a", b"b"]
            for message in messages:
                receiver.complete_message(message)
    assert fake_servicebus.counts("jobs", "d").active == 0


# -- lifecycle ----------------------------------------------------------------------------


def test_stop_is_idempotent_and_frees_the_port() -> None:
    import socket

    bus = FakeServiceBus().start()
    port, admin_port = bus.port, bus.admin_port
    assert port and admin_port and port != admin_port
    bus.stop()
    bus.stop()
    for p in (port, admin_port):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))


async def test_stop_with_connected_clients(client: ServiceBusClient) -> None:
    bus = FakeServiceBus().start()
    try:
        bus.create_topic("t")
        bus.create_subscription("t", "s")
        async with ServiceBusClient.from_connection_string(
            bus.connection_string, retry_total=0
        ) as other:
            await send(other, "t", ServiceBusMessage(b"x"))
            started = time.monotonic()
            bus.stop()
            assert time.monotonic() - started < 5
    finally:
        bus.stop()
