"""``FakeServiceBus``: runs the AMQP broker and the ATOM admin endpoint on background threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, cast

from proton import Event, Handler
from proton.reactor import Container

from . import _model
from ._amqp import AmqpBroker
from ._atom import AtomServer
from ._model import Namespace, Subscription, Topic

TICK_SECONDS = 0.02
_KEY = "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=fake;UseDevelopmentEmulator=true;"


@dataclass(frozen=True)
class SubscriptionCounts:
    """Message counts of one subscription, as the runtime properties report them."""

    active: int
    locked: int
    dead_letter: int
    scheduled: int
    """Scheduled messages wait at the topic; this is the topic's count."""


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class _Ticker:
    """Re-arming proton timer that drives lock expiry, schedules and delivery."""

    def __init__(self, server: FakeServiceBus) -> None:
        self.server = server

    def on_timer_task(self, event: Event) -> None:
        self.server._on_tick(event.container)


class FakeServiceBus:
    """A Service Bus namespace on 127.0.0.1 that the unmodified azure-servicebus SDK can use.

    ``with FakeServiceBus() as sb:`` starts it; use ``sb.connection_string`` for
    ``ServiceBusClient`` and ``sb.admin_client()`` (or ``sb.admin_connection_string`` plus
    ``sb.admin_client_kwargs``) for ``ServiceBusAdministrationClient``. Entities can also be
    created from Python: ``sb.create_topic``, ``sb.create_subscription``, ``sb.set_sql_rule``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, admin_port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._requested_admin_port = admin_port
        self.namespace = Namespace()
        self.broker = AmqpBroker(self.namespace)
        self.port = 0
        self.admin_port = 0
        self._atom: AtomServer | None = None
        self._thread: threading.Thread | None = None
        self._container: Container | None = None
        self._acceptor: Any = None
        self._ready = threading.Event()
        self._stop_requested = threading.Event()
        self._error: BaseException | None = None
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeServiceBus:
        """Start both endpoints; returns once they accept connections."""
        if self._thread is not None:
            return self
        self._atom = AtomServer(self.namespace, self.host, self._requested_admin_port)
        self._atom.start()
        self.admin_port = self._atom.port
        self._thread = threading.Thread(target=self._run, name="fake-servicebus-amqp", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake Service Bus did not start within 10 s")
        if self._error is not None:
            raise RuntimeError("fake Service Bus failed to start") from self._error
        return self

    def stop(self) -> None:
        """Close connections and listeners and join the threads; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_requested.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._atom is not None:
            self._atom.stop()

    def __enter__(self) -> FakeServiceBus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            container = Container(self.broker)
            container.timeout = TICK_SECONDS
            self._container = container
            self._acceptor = container.listen(f"{self.host}:{self._requested_port}")
            self.port = self._acceptor._selectable.getsockname()[1]
            container.schedule(TICK_SECONDS, cast(Handler, _Ticker(self)))
            container.start()
        except BaseException as err:  # reported by start()
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        closing_deadline: float | None = None
        while container.process():
            if self._stop_requested.is_set() and closing_deadline is None:
                closing_deadline = time.monotonic() + 2.0
                self._acceptor.close()
                self.broker.close_all()
            if closing_deadline is not None and (
                not self.broker.connections or time.monotonic() > closing_deadline
            ):
                break
        container.stop()
        container.process()

    def _on_tick(self, container: Container) -> None:
        self.broker.tick()
        if not self._stop_requested.is_set():
            container.schedule(TICK_SECONDS, cast(Handler, _Ticker(self)))

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised inside the fake itself (its bugs); tests assert this is empty."""
        return list(self.broker.errors)

    # -- connection details ---------------------------------------------------------------

    @property
    def connection_string(self) -> str:
        """For ``ServiceBusClient.from_connection_string`` (AMQP, no TLS)."""
        return f"Endpoint=sb://{self.host}:{self.port};{_KEY}"

    @property
    def admin_connection_string(self) -> str:
        """For ``ServiceBusAdministrationClient.from_connection_string``.

        The SDK's admin client always speaks HTTPS to the Endpoint's host:port (it ignores
        ``UseDevelopmentEmulator`` for the scheme), so this names the fake's HTTPS port; pass
        ``admin_client_kwargs`` too so it trusts the fake's self-signed certificate.
        """
        return f"Endpoint=sb://{self.host}:{self.admin_port};{_KEY}"

    @property
    def admin_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the admin client: ``connection_verify`` = the fake's CA file."""
        assert self._atom is not None, "start the fake first"
        return {"connection_verify": self._atom.ca_file}

    def admin_client(self, **kwargs: Any) -> Any:
        """An ``azure.servicebus.aio.management.ServiceBusAdministrationClient`` for the fake."""
        from azure.servicebus.aio.management import ServiceBusAdministrationClient

        return ServiceBusAdministrationClient.from_connection_string(
            self.admin_connection_string, **{**self.admin_client_kwargs, **kwargs}
        )

    # -- Python-side entity management ----------------------------------------------------

    def create_topic(
        self,
        name: str,
        *,
        requires_duplicate_detection: bool = False,
        duplicate_detection_history_time_window: timedelta | float = 600.0,
        default_message_time_to_live: timedelta | float | None = None,
    ) -> None:
        """Create a topic (raises ``EntityExists`` if it exists)."""
        with self.namespace.lock:
            self.namespace.create_topic(
                name,
                time.time(),
                requires_duplicate_detection=requires_duplicate_detection,
                duplicate_detection_history_time_window=_seconds(
                    duplicate_detection_history_time_window
                ),
                default_message_time_to_live=_seconds(default_message_time_to_live),
            )

    def create_subscription(
        self,
        topic: str,
        name: str,
        *,
        lock_duration: timedelta | float = 60.0,
        max_delivery_count: int = 10,
        default_message_time_to_live: timedelta | float | None = None,
        dead_lettering_on_message_expiration: bool = False,
        sql_filter: str | None = None,
    ) -> None:
        """Create a subscription with a ``$Default`` rule (TrueFilter, or ``sql_filter``)."""
        with self.namespace.lock:
            subscription = self.namespace.create_subscription(
                topic,
                name,
                time.time(),
                lock_duration=_seconds(lock_duration),
                max_delivery_count=max_delivery_count,
                default_message_time_to_live=_seconds(default_message_time_to_live),
                dead_lettering_on_message_expiration=dead_lettering_on_message_expiration,
            )
            if sql_filter is not None:
                rule = subscription.rules[_model.DEFAULT_RULE_NAME.lower()]
                rule.filter = _model.parse_sql_filter(sql_filter)

    def set_sql_rule(self, topic: str, subscription: str, rule: str, sql_filter: str) -> None:
        """Create or replace one SQL rule (only the shapes ``parse_sql_filter`` accepts)."""
        parsed = _model.parse_sql_filter(sql_filter)
        with self.namespace.lock:
            sub = self.namespace.topic(topic).subscription(subscription)
            sub.rules[rule.lower()] = _model.Rule(rule, parsed, time.time())

    def delete_rule(self, topic: str, subscription: str, rule: str) -> None:
        with self.namespace.lock:
            self.namespace.delete_rule(topic, subscription, rule)

    def delete_topic(self, name: str) -> None:
        with self.namespace.lock:
            self.namespace.delete_topic(name)

    def delete_subscription(self, topic: str, name: str) -> None:
        with self.namespace.lock:
            self.namespace.delete_subscription(topic, name)

    def topic_names(self) -> list[str]:
        with self.namespace.lock:
            return sorted(t.name for t in self.namespace.topics.values())

    def subscription_names(self, topic: str) -> list[str]:
        with self.namespace.lock:
            return sorted(s.name for s in self.namespace.topic(topic).subscriptions.values())

    def counts(self, topic: str, subscription: str) -> SubscriptionCounts:
        """Message counts of a subscription (what the admin runtime properties report)."""
        with self.namespace.lock:
            top = self.namespace.topic(topic)
            sub = top.subscription(subscription)
            total, locked = sub.queue.counts()
            dead, _ = sub.dead_letter_queue.counts()
            return SubscriptionCounts(total, locked, dead, len(top.scheduled))

    def get_topic(self, name: str) -> Topic:
        """The live model object (hold ``namespace.lock`` while reading it)."""
        with self.namespace.lock:
            return self.namespace.topic(name)

    def get_subscription(self, topic: str, name: str) -> Subscription:
        """The live model object (hold ``namespace.lock`` while reading it)."""
        with self.namespace.lock:
            return self.namespace.topic(topic).subscription(name)


def fake_servicebus_fixture() -> Iterator[FakeServiceBus]:
    """Body of a pytest fixture: ``fake_servicebus = pytest.fixture(fake_servicebus_fixture)``.

    Fails the test at teardown if the fake itself raised (a bug in the fake, not the SDK).
    """
    with FakeServiceBus() as bus:
        yield bus
        assert not bus.errors, f"the fake Service Bus raised: {bus.errors!r}"
