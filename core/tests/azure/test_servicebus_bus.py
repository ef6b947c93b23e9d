"""The Service Bus EventBus passes the EventBus contract over the wire.

Against `tests.fakes.servicebus` (a real AMQP 1.0 + HTTPS/ATOM fake driven by the unmodified
SDK) always; against a real namespace when ``ION_TEST_SERVICEBUS_CONNECTION_STRING`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ion.core import errors
from ion.core.backends import open_bus
from ion.core.backends.azure.servicebus import (
    ENV_ADMIN_CONNECTION_STRING,
    ENV_ADMIN_VERIFY_TLS,
    ENV_CONNECTION_STRING,
    ServiceBusEventBus,
    ServiceBusOptions,
    subscription_entity,
    topic_entity,
)
from ion.core.ports.bus import EventBus, OutgoingMessage, SubscriptionOptions
from ion.core.testing.bus_contract import EventBusContract

# tests/fakes lives at the repository root, which is not on sys.path under `pytest` alone.
_REPO_ROOT = Path(__file__).resolve().parents[3]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from tests.fakes.servicebus import FakeServiceBus  # noqa: E402

LIVE_VARIABLE = "ION_TEST_SERVICEBUS_CONNECTION_STRING"
WAIT = timedelta(seconds=5)


@pytest.fixture
def fake() -> Iterator[FakeServiceBus]:
    with FakeServiceBus() as bus:
        yield bus
        assert not bus.errors, f"the fake Service Bus raised: {bus.errors!r}"


def _environ(fake: FakeServiceBus) -> dict[str, str]:
    return {
        ENV_CONNECTION_STRING: fake.connection_string,
        ENV_ADMIN_CONNECTION_STRING: fake.admin_connection_string,
        ENV_ADMIN_VERIFY_TLS: "0",
    }


def _on_fake(fake: FakeServiceBus, **options: object) -> ServiceBusEventBus:
    return ServiceBusEventBus.from_url(
        f"servicebus://{fake.host}:{fake.port}",
        environ=_environ(fake),
        options=ServiceBusOptions(operation_timeout=timedelta(seconds=20), **options),  # type: ignore[arg-type]  # test passes options through
    )


class TestServiceBusEventBusOnFake(EventBusContract):
    """The contract over AMQP and HTTPS against the in-process fake."""

    lock_duration = timedelta(seconds=1)

    @pytest.fixture
    async def bus(self, fake: FakeServiceBus) -> AsyncIterator[EventBus]:
        b: EventBus = _on_fake(fake)
        yield b
        await b.aclose()


@pytest.mark.live
@pytest.mark.skipif(
    not os.environ.get(LIVE_VARIABLE),
    reason=f"set {LIVE_VARIABLE} to a namespace connection string to run against Service Bus",
)
class TestServiceBusEventBusLive(EventBusContract):
    """The contract against a real namespace (Standard tier or above: topics are needed)."""

    lock_duration = timedelta(seconds=5)  # the service's minimum lock duration

    @pytest.fixture
    async def bus(self) -> AsyncIterator[EventBus]:
        b: EventBus = ServiceBusEventBus.from_connection_string(os.environ[LIVE_VARIABLE])
        yield b
        await b.aclose()

    @pytest.fixture
    async def names(self) -> AsyncIterator[tuple[str, str, str]]:
        """Fresh names per test; the topic (and its subscriptions) is deleted afterwards."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.servicebus.aio.management import ServiceBusAdministrationClient

        tag = uuid.uuid4().hex[:8]
        topic = f"ion-test-{tag}"
        yield topic, f"{topic}_alpha", f"{topic}_beta"
        admin = ServiceBusAdministrationClient.from_connection_string(os.environ[LIVE_VARIABLE])
        async with admin, asyncio.timeout(60):
            with contextlib.suppress(ResourceNotFoundError):
                await admin.delete_topic(topic_entity(topic))


# -- Service Bus specifics (fake only) ----------------------------------------------------


def test_entity_names_fit_service_bus_limits_deterministically() -> None:
    assert topic_entity("images.resized") == "images.resized"
    assert subscription_entity("images_resize") == "images_resize"
    long = "x" * 80
    short = subscription_entity(long)
    assert len(short) <= 50 and short.startswith("x" * 30)
    assert short == subscription_entity(long)
    assert subscription_entity(long + "y") != short
    assert len(topic_entity("t" * 400)) <= 260
    odd = subscription_entity("événement reçu")
    assert odd != subscription_entity("événement recu")
    assert all(c.isalnum() or c in "-._" for c in odd) and odd[0].isalnum() and odd[-1].isalnum()
    with pytest.raises(errors.ValidationError):
        topic_entity("")


async def test_long_names_are_shortened_and_still_routed(fake: FakeServiceBus) -> None:
    async with _on_fake(fake) as bus:
        topic = "event." + "t" * 300
        subs = ["module-" + "a" * 60, "module-" + "b" * 60]
        for sub in subs:
            await bus.ensure_subscription(topic, sub, SubscriptionOptions())
        assert fake.topic_names() == [topic_entity(topic)]
        assert fake.subscription_names(topic_entity(topic)) == sorted(
            subscription_entity(s) for s in subs
        )
        await bus.publish(
            topic, [OutgoingMessage(body=b"x", message_id="m", to_subscription=subs[1])]
        )
        assert await bus.receive(topic, subs[0], max_wait=timedelta(milliseconds=300)) == []
        [got] = await bus.receive(topic, subs[1], max_wait=WAIT)
        assert (got.topic, got.subscription, got.delivery_count) == (topic, subs[1], 1)
        assert "ion-to" not in got.properties
        await bus.complete(got)


async def test_subscription_settings_reach_the_entity(fake: FakeServiceBus) -> None:
    async with _on_fake(fake) as bus:
        options = SubscriptionOptions(
            max_delivery_count=4,
            lock_duration=timedelta(seconds=7),
            duplicate_detection_window=timedelta(minutes=20),
        )
        await bus.ensure_subscription("jobs", "jobs_resize", options)
        sub = fake.get_subscription("jobs", "jobs_resize")
        assert (sub.max_delivery_count, sub.lock_duration) == (4, 7.0)
        assert [r.name for r in sub.rules.values()] == ["ion-to"]
        topic = fake.get_topic("jobs")
        assert topic.requires_duplicate_detection
        assert topic.duplicate_detection_history_time_window == 1200.0
        await bus.ensure_subscription(
            "jobs", "jobs_resize", SubscriptionOptions(max_delivery_count=6)
        )
        assert (sub.max_delivery_count, sub.lock_duration) == (6, 60.0)
        assert topic.duplicate_detection_history_time_window == 1200.0  # the longest wins


async def test_trace_context_travels_in_application_properties(fake: FakeServiceBus) -> None:
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    async with _on_fake(fake) as bus:
        await bus.ensure_subscription("jobs", "jobs_a", SubscriptionOptions())
        with trace.use_span(NonRecordingSpan(context)):
            await bus.publish("jobs", [OutgoingMessage(body=b"x", message_id="m")])
        [got] = await bus.receive("jobs", "jobs_a", max_wait=WAIT)
        assert got.properties["traceparent"] == (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        )
        assert got.message_id == "m"
        await bus.complete(got)


async def test_publish_is_all_or_none(fake: FakeServiceBus) -> None:
    async with _on_fake(fake) as bus:
        await bus.ensure_subscription("jobs", "jobs_a", SubscriptionOptions())
        big = [OutgoingMessage(body=b"x" * 150_000, message_id=f"m{i}") for i in range(2)]
        with pytest.raises(errors.ValidationError):
            await bus.publish("jobs", big)
        with pytest.raises(errors.ValidationError):
            await bus.publish(
                "jobs", [OutgoingMessage(body=b"x", message_id="r", properties={"ion-to": "x"})]
            )
        assert (await bus.counts("jobs", "jobs_a")).active == 0


async def test_settling_after_the_subscription_was_deleted_is_lock_lost(
    fake: FakeServiceBus,
) -> None:
    async with _on_fake(fake) as bus:
        await bus.ensure_subscription("jobs", "jobs_a", SubscriptionOptions())
        await bus.publish("jobs", [OutgoingMessage(body=b"x", message_id="m")])
        [got] = await bus.receive("jobs", "jobs_a", max_wait=WAIT)
        await bus.delete_subscription("jobs", "jobs_a")
        with pytest.raises(errors.LockLostError):
            await bus.complete(got)
        with pytest.raises(errors.NotFoundError):
            await bus.counts("jobs", "jobs_a")


async def test_open_bus_reads_the_connection_string_from_the_environment(
    fake: FakeServiceBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _environ(fake).items():
        monkeypatch.setenv(key, value)
    bus = open_bus(f"servicebus://{fake.host}:{fake.port}")
    assert isinstance(bus, ServiceBusEventBus)
    assert "SharedAccessKey" not in repr(bus)
    async with bus:
        await bus.ensure_topic("jobs")
    assert fake.topic_names() == ["jobs"]


async def test_with_a_ca_file_the_admin_client_verifies_the_server(fake: FakeServiceBus) -> None:
    verified = {
        ENV_CONNECTION_STRING: fake.connection_string,
        ENV_ADMIN_CONNECTION_STRING: fake.admin_connection_string,
        "ION_AZURE_CA_FILE": fake.admin_client_kwargs["connection_verify"],
    }
    url = f"servicebus://{fake.host}:{fake.port}"
    options = ServiceBusOptions(operation_timeout=timedelta(seconds=20))
    async with ServiceBusEventBus.from_url(url, environ=verified, options=options) as bus:
        await bus.ensure_topic("trusted")
    assert "trusted" in fake.topic_names()
    # the system's CAs do not know the fake's self-signed certificate
    unverified = {k: v for k, v in verified.items() if k != "ION_AZURE_CA_FILE"}
    with pytest.raises(errors.IonError):
        async with ServiceBusEventBus.from_url(url, environ=unverified, options=options) as bus:
            await bus.ensure_topic("untrusted")
    assert "untrusted" not in fake.topic_names()


def test_configuration_errors_name_the_variable() -> None:
    with pytest.raises(errors.ConfigError, match="ION_BUS__URL"):
        ServiceBusEventBus.from_url("servicebus://", environ={})
    with pytest.raises(errors.ConfigError, match="ION_BUS__URL"):
        ServiceBusEventBus.from_url("servicebus://ns/extra", environ={})
    other = "Endpoint=sb://other.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s"
    with pytest.raises(errors.ConfigError, match=ENV_CONNECTION_STRING) as caught:
        ServiceBusEventBus.from_url("servicebus://mine", environ={ENV_CONNECTION_STRING: other})
    assert "SharedAccessKey=s" not in str(caught.value)
    mine = other.replace("other", "mine")
    with pytest.raises(errors.ConfigError, match=ENV_ADMIN_VERIFY_TLS):
        ServiceBusEventBus.from_url(
            "servicebus://mine",
            environ={ENV_CONNECTION_STRING: mine, ENV_ADMIN_VERIFY_TLS: "0"},
        )
    with pytest.raises(errors.ConfigError):
        ServiceBusOptions(prefetch=1000)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung service)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for s in held:
        s.close()
    server.close()


async def test_every_sdk_call_is_bounded_and_raises_transient(silent_port: int) -> None:
    hung = (
        f"Endpoint=sb://127.0.0.1:{silent_port};SharedAccessKeyName=k;SharedAccessKey=s;"
        "UseDevelopmentEmulator=true;"
    )
    bus = ServiceBusEventBus.from_connection_string(
        hung, options=ServiceBusOptions(operation_timeout=timedelta(milliseconds=500), retries=0)
    )
    async with bus:
        for call in (
            bus.ensure_topic("jobs"),
            bus.publish("jobs", [OutgoingMessage(body=b"x", message_id="m")]),
            bus.receive("jobs", "jobs_a", max_wait=timedelta(milliseconds=100)),
        ):
            started = time.monotonic()
            with pytest.raises(errors.TransientError, match="timed out"):
                await call
            assert time.monotonic() - started < 5


async def test_a_subscription_deleted_elsewhere_is_not_found(fake: FakeServiceBus) -> None:
    async with _on_fake(fake) as bus:
        await bus.ensure_subscription("jobs", "jobs_a", SubscriptionOptions())
        await bus.publish("jobs", [OutgoingMessage(body=b"x", message_id="first")])
        [got] = await bus.receive("jobs", "jobs_a", max_wait=WAIT)
        await bus.complete(got)
        fake.delete_subscription("jobs", "jobs_a")
        started = time.monotonic()
        with pytest.raises(errors.NotFoundError):
            await bus.receive("jobs", "jobs_a", max_wait=timedelta(milliseconds=500))
        fake.delete_topic("jobs")
        with pytest.raises(errors.NotFoundError):
            await bus.publish("jobs", [OutgoingMessage(body=b"x", message_id="m")])
        assert time.monotonic() - started < 15
