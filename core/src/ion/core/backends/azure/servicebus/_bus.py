"""The Azure Service Bus EventBus: a topic per event type, a subscription per subscribing module.

Each subscription gets its module's max delivery count and lock duration, and one SQL rule,
``"ion-to" IS NULL OR "ion-to" = '<subscription>'``, so `to_subscription` (an ``ion-to``
application property) reaches one subscription while everything else fans out; topics are
created with duplicate detection, so a message id is accepted once per window. Delivery is
peek-lock over AMQP: the SDK's receivers are cached per subscription and serialised by a lock
(the SDK is not coroutine-safe), and receives wait in short slices so settlements interleave.
Every SDK call is bounded by `ServiceBusOptions.operation_timeout` (``TransientError`` when it
expires); SDK errors become `ion.core.errors`. `delivery_count` follows the service (1 on the
first delivery); the Python SDK reports one less, which is added back here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core.exceptions import AzureError
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus import exceptions as sb
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.aio.management import ServiceBusAdministrationClient
from azure.servicebus.management import SqlRuleFilter
from opentelemetry import propagate

from ion.core import errors
from ion.core.backends.azure.servicebus._config import (
    ServiceBusOptions,
    client_kwargs,
    resolve_url,
)
from ion.core.backends.azure.servicebus._support import (
    ROUTING_PROPERTY,
    dead_letter_details,
    received_properties,
    routing_filter,
    subscription_entity,
    topic_entity,
    translate_servicebus,
)
from ion.core.ports.bus import (
    OutgoingMessage,
    PeekedMessage,
    ReceivedMessage,
    SubscriptionCounts,
    SubscriptionOptions,
)

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = ["ServiceBusEventBus"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_RULE_NAME = "ion-to"
_DEFAULT_RULE = "$Default"
_RECEIVE_SLICE = 1.0
"""Longest single SDK receive; a receive waiting longer loops, letting settlements through."""
_PEEK_FROM = 1
"""Peek from the first sequence number; without one the SDK continues after the last peek."""


@dataclass(slots=True)
class _Inflight:
    message: ServiceBusReceivedMessage
    key: tuple[str, str, bool]


@dataclass(slots=True)
class _Receiver:
    receiver: ServiceBusReceiver
    lock: asyncio.Lock


class ServiceBusEventBus:
    """EventBus on Azure Service Bus; see the module docstring for the mapping."""

    def __init__(
        self,
        client: ServiceBusClient,
        admin: ServiceBusAdministrationClient,
        *,
        options: ServiceBusOptions | None = None,
        owned_credential: AsyncTokenCredential | None = None,
    ) -> None:
        """Wrap an SDK client and admin client (both closed by `aclose`)."""
        self._client = client
        self._admin = admin
        self._options = options or ServiceBusOptions()
        self._timeout = self._options.operation_timeout.total_seconds()
        self._owned_credential = owned_credential
        self._senders: dict[str, ServiceBusSender] = {}
        self._receivers: dict[tuple[str, str, bool], _Receiver] = {}
        self._inflight: dict[str, _Inflight] = {}
        self._topic_windows: dict[str, timedelta] = {}
        """Topics known to exist, with the duplicate-detection window they have at least."""
        self._open_locks: dict[object, asyncio.Lock] = {}
        """One lock per sender or receiver being opened, so a slow open blocks only its own."""
        self._closed = False

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        *,
        admin_connection_string: str | None = None,
        admin_verify_tls: bool | str = True,
        options: ServiceBusOptions | None = None,
    ) -> ServiceBusEventBus:
        """Return a bus authenticated by a connection string (SAS key).

        `admin_connection_string` names the management endpoint when it differs (the
        emulator's port 5300, a test fake).

        Raises:
            errors.ConfigError: a connection string is malformed.
        """
        opts = options or ServiceBusOptions()
        admin_kwargs: dict[str, Any] = {"retry_total": opts.retries}
        if admin_verify_tls is not True:  # off (a loopback test server) or a CA bundle
            admin_kwargs["connection_verify"] = admin_verify_tls
        try:
            client = ServiceBusClient.from_connection_string(
                connection_string, **client_kwargs(opts)
            )
            admin = ServiceBusAdministrationClient.from_connection_string(
                admin_connection_string or connection_string,
                **admin_kwargs,
            )
        except ValueError:
            # The SDK's message may quote the string; ours must not (it holds the key).
            raise errors.ConfigError(
                "the Service Bus connection string is malformed; it looks like"
                " 'Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<n>;"
                "SharedAccessKey=<key>'"
            ) from None
        return cls(client, admin, options=opts)

    @classmethod
    def from_namespace(
        cls,
        fully_qualified_namespace: str,
        credential: AsyncTokenCredential,
        *,
        owned_credential: AsyncTokenCredential | None = None,
        options: ServiceBusOptions | None = None,
    ) -> ServiceBusEventBus:
        """Return a bus on ``<namespace>.servicebus.windows.net`` with an Entra ID credential.

        `owned_credential`, if given, is closed with the bus.
        """
        opts = options or ServiceBusOptions()
        client = ServiceBusClient(fully_qualified_namespace, credential, **client_kwargs(opts))
        admin = ServiceBusAdministrationClient(
            fully_qualified_namespace, credential, retry_total=opts.retries
        )
        return cls(client, admin, options=opts, owned_credential=owned_credential)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        credential: AsyncTokenCredential | None = None,
        environ: Mapping[str, str] | None = None,
        options: ServiceBusOptions | None = None,
    ) -> ServiceBusEventBus:
        """Return the bus of ``servicebus://<namespace>``, credentials from the environment.

        Without `credential`: ``ION_AZURE_SERVICEBUS_CONNECTION_STRING`` if set (its endpoint
        must be the URL's namespace; ``ION_AZURE_SERVICEBUS_ADMIN_CONNECTION_STRING`` and
        ``ION_AZURE_SERVICEBUS_ADMIN_VERIFY_TLS=0`` serve local management endpoints), else
        `DefaultAzureCredential` on ``<namespace>.servicebus.windows.net``.

        Raises:
            errors.ConfigError: the URL, a connection string or a variable is malformed.
        """
        target = resolve_url(url, os.environ if environ is None else environ)
        if credential is None and target.connection_string:
            return cls.from_connection_string(
                target.connection_string,
                admin_connection_string=target.admin_connection_string,
                admin_verify_tls=target.admin_verify_tls,
                options=options,
            )
        owned: AsyncTokenCredential | None = None
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = owned = DefaultAzureCredential()
        return cls.from_namespace(
            target.fully_qualified_namespace, credential, owned_credential=owned, options=options
        )

    def __repr__(self) -> str:
        return f"ServiceBusEventBus({self._client.fully_qualified_namespace!r})"

    async def __aenter__(self) -> ServiceBusEventBus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- bounded SDK calls --------------------------------------------------------------

    async def _call(self, action: str, call: Callable[[], Awaitable[T]], extra: float = 0) -> T:
        """Run one SDK call within the operation timeout, translating its errors."""
        if self._closed:
            raise errors.ConfigError(f"{action}: the Service Bus EventBus is closed")
        try:
            async with asyncio.timeout(self._timeout + extra):
                return await call()
        except TimeoutError as err:
            raise errors.TransientError(
                f"{action} timed out after {self._timeout + extra:.1f} s"
            ) from err
        except (AzureError, sb.MessageAlreadySettled) as err:
            raise translate_servicebus(err, action) from err

    # -- entities -----------------------------------------------------------------------

    async def ensure_topic(self, topic: str) -> None:
        """Create the topic (with duplicate detection) if it does not exist."""
        await self._ensure_topic(topic, self._options.default_duplicate_window)

    async def _ensure_topic(self, topic: str, window: timedelta) -> None:
        name = topic_entity(topic)
        known_window = self._topic_windows.get(name)
        if known_window is not None and known_window >= window:
            return
        try:
            current = await self._call(f"get topic {name}", lambda: self._admin.get_topic(name))
        except errors.NotFoundError:
            try:
                await self._call(
                    f"create topic {name}",
                    lambda: self._admin.create_topic(
                        name,
                        requires_duplicate_detection=True,
                        duplicate_detection_history_time_window=window,
                    ),
                )
                log.info("created Service Bus topic %s", name)
            except errors.ConflictError:
                pass  # created concurrently
        else:
            known = current.duplicate_detection_history_time_window
            if not current.requires_duplicate_detection:
                # The service cannot turn duplicate detection on for an existing topic.
                log.warning(
                    "Service Bus topic %s was created without duplicate detection; repeated"
                    " message ids will be delivered again (recreate the topic to fix this)",
                    name,
                )
            elif isinstance(known, timedelta) and known >= window:
                window = known
            else:
                await self._call(
                    f"update topic {name}",
                    lambda: self._admin.update_topic(
                        current, duplicate_detection_history_time_window=window
                    ),
                )
        self._topic_windows[name] = window

    async def ensure_subscription(
        self, topic: str, subscription: str, options: SubscriptionOptions
    ) -> None:
        """Create the subscription (and its topic) if missing; update its options if present."""
        await self._ensure_topic(topic, options.duplicate_detection_window)
        t, s = topic_entity(topic), subscription_entity(subscription)
        where = f"subscription {t}/{s}"
        try:
            current = await self._call(f"get {where}", lambda: self._admin.get_subscription(t, s))
        except errors.NotFoundError:
            try:
                await self._call(
                    f"create {where}",
                    lambda: self._admin.create_subscription(
                        t,
                        s,
                        max_delivery_count=options.max_delivery_count,
                        lock_duration=options.lock_duration,
                    ),
                )
                log.info("created Service Bus subscription %s/%s", t, s)
            except errors.ConflictError:
                pass
        else:
            if (current.max_delivery_count, current.lock_duration) != (
                options.max_delivery_count,
                options.lock_duration,
            ):
                await self._call(
                    f"update {where}",
                    lambda: self._admin.update_subscription(
                        t,
                        current,
                        max_delivery_count=options.max_delivery_count,
                        lock_duration=options.lock_duration,
                    ),
                )
        await self._ensure_rule(t, s)
        # The subscriber receives next: open its link now, so the first receive does not spend
        # its wait on the handshake (about half a second with the SDK's polling).
        await self._receiver(t, s, dead=False, known=True)

    async def _ensure_rule(self, t: str, s: str) -> None:
        async def rule_names() -> list[str]:
            return [r.name async for r in self._admin.list_rules(t, s)]

        names = await self._call(f"list rules of {t}/{s}", rule_names)
        if _RULE_NAME not in names:
            with contextlib.suppress(errors.ConflictError):
                await self._call(
                    f"create rule {_RULE_NAME} on {t}/{s}",
                    lambda: self._admin.create_rule(
                        t, s, _RULE_NAME, filter=SqlRuleFilter(routing_filter(s))
                    ),
                )
        if _DEFAULT_RULE in names:
            with contextlib.suppress(errors.NotFoundError):
                await self._call(
                    f"delete rule {_DEFAULT_RULE} on {t}/{s}",
                    lambda: self._admin.delete_rule(t, s, _DEFAULT_RULE),
                )

    async def delete_subscription(self, topic: str, subscription: str) -> None:
        """Delete the subscription and its messages; succeeds if it is already gone."""
        t, s = topic_entity(topic), subscription_entity(subscription)
        for dead in (False, True):
            await self._forget_receiver((t, s, dead))
        with contextlib.suppress(errors.NotFoundError):
            await self._call(
                f"delete subscription {t}/{s}", lambda: self._admin.delete_subscription(t, s)
            )

    async def _exists(self, t: str, s: str | None) -> bool:
        try:
            if s is None:
                await self._call(f"get topic {t}", lambda: self._admin.get_topic(t))
            else:
                await self._call(
                    f"get subscription {t}/{s}", lambda: self._admin.get_subscription(t, s)
                )
        except errors.NotFoundError:
            return False
        return True

    def _missing(self, t: str, s: str | None) -> errors.NotFoundError:
        if s is None:
            return errors.NotFoundError(
                f"topic {t!r} does not exist; a module subscribing to it creates it"
            )
        return errors.NotFoundError(f"subscription {t}/{s} does not exist")

    # -- publishing ---------------------------------------------------------------------

    async def _sender(self, t: str) -> ServiceBusSender:
        sender = self._senders.get(t)
        if sender is not None:
            return sender
        async with self._open_locks.setdefault(t, asyncio.Lock()):
            if t not in self._senders:
                if not await self._exists(t, None):
                    raise self._missing(t, None)
                candidate = self._client.get_topic_sender(t)
                await self._open(f"open sender on {t}", candidate)
                self._senders[t] = candidate
            return self._senders[t]

    async def _open(self, action: str, handler: ServiceBusSender | ServiceBusReceiver) -> None:
        try:
            await self._call(action, handler.__aenter__)
        except BaseException:
            await _close_quietly(handler)
            raise

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        """Publish messages to a topic in one batch (all or none).

        Raises:
            errors.NotFoundError: the topic does not exist.
            errors.ValidationError: the messages do not fit in one batch, or use ``ion-to``.
        """
        if not messages:
            return
        t = topic_entity(topic)
        sender = await self._sender(t)
        outgoing = [self._outgoing(m) for m in messages]

        async def send() -> None:
            batch = await sender.create_message_batch()
            for message in outgoing:
                try:
                    batch.add_message(message)
                except sb.MessageSizeExceededError as err:
                    raise errors.ValidationError(
                        f"{len(outgoing)} messages for topic {t!r} do not fit in one batch of"
                        f" {batch.max_size_in_bytes} bytes; publish fewer or smaller messages",
                        field="messages",
                        rule="batch-size",
                    ) from err
            await sender.send_messages(batch)

        try:
            await self._call(f"publish {len(outgoing)} message(s) to {t}", send)
        except errors.ConfigError:
            # The service answers a link to a deleted entity with a failed authentication.
            if not await self._exists(t, None):
                await self._drop_sender(t)
                raise self._missing(t, None) from None
            raise

    def _outgoing(self, message: OutgoingMessage) -> ServiceBusMessage:
        properties: dict[str | bytes, Any] = {}
        for key, value in message.properties.items():
            if key == ROUTING_PROPERTY:
                raise errors.ValidationError(
                    f"property {ROUTING_PROPERTY!r} is reserved; set to_subscription instead",
                    field="properties",
                    rule="reserved",
                )
            properties[key] = value
        if "traceparent" not in properties:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            properties.update(carrier)
        if message.to_subscription is not None:
            properties[ROUTING_PROPERTY] = subscription_entity(message.to_subscription)
        scheduled = message.scheduled_at
        if scheduled is not None and scheduled.tzinfo is None:
            scheduled = scheduled.replace(tzinfo=UTC)
        return ServiceBusMessage(
            message.body,
            message_id=message.message_id,
            application_properties=properties,
            scheduled_enqueue_time_utc=scheduled,
        )

    async def _drop_sender(self, t: str) -> None:
        sender = self._senders.pop(t, None)
        if sender is not None:
            await _close_quietly(sender)

    # -- receiving ----------------------------------------------------------------------

    async def _receiver(self, t: str, s: str, dead: bool, *, known: bool = False) -> _Receiver:
        key = (t, s, dead)
        cached = self._receivers.get(key)
        if cached is not None:
            return cached
        async with self._open_locks.setdefault(key, asyncio.Lock()):
            if key not in self._receivers:
                # Opening a link to a missing entity fails only after the SDK's retries (and as
                # an authentication error), so ask the management API first.
                if not known and not await self._exists(t, s):
                    raise self._missing(t, s)
                receiver = self._client.get_subscription_receiver(
                    t,
                    s,
                    sub_queue=ServiceBusSubQueue.DEAD_LETTER if dead else None,
                    receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
                    prefetch_count=self._options.prefetch,
                )
                await self._open(f"open receiver on {t}/{s}", receiver)
                self._receivers[key] = _Receiver(receiver, asyncio.Lock())
            return self._receivers[key]

    async def _forget_receiver(self, key: tuple[str, str, bool]) -> None:
        cached = self._receivers.pop(key, None)
        if cached is not None:
            await _close_quietly(cached.receiver)

    async def receive(
        self, topic: str, subscription: str, *, max_messages: int = 1, max_wait: timedelta
    ) -> list[ReceivedMessage]:
        """Lock and return up to `max_messages`, waiting up to `max_wait` for the first one.

        Raises:
            errors.NotFoundError: the subscription does not exist.
        """
        return await self._receive(topic, subscription, max_messages, max_wait, dead=False)

    async def receive_dead_letters(
        self, topic: str, subscription: str, *, max_messages: int = 1, max_wait: timedelta
    ) -> list[ReceivedMessage]:
        """Lock and return messages from the dead-letter queue (to replay or purge them)."""
        return await self._receive(topic, subscription, max_messages, max_wait, dead=True)

    async def _receive(
        self, topic: str, subscription: str, limit: int, max_wait: timedelta, *, dead: bool
    ) -> list[ReceivedMessage]:
        if limit < 1:
            raise errors.ValidationError(
                f"max_messages={limit} must be 1 or more", field="max_messages", rule="min"
            )
        deadline = time.monotonic() + max(max_wait.total_seconds(), 0.0)
        t, s = topic_entity(topic), subscription_entity(subscription)
        cached = await self._receiver(t, s, dead)
        got: list[ServiceBusReceivedMessage] = []
        try:
            while not got:
                # At least one short look, even when opening the receiver used up max_wait.
                wait = min(max(deadline - time.monotonic(), 0.05), _RECEIVE_SLICE)
                async with cached.lock:
                    got = await self._call(
                        f"receive from {t}/{s}",
                        functools.partial(
                            cached.receiver.receive_messages,
                            max_message_count=limit,
                            max_wait_time=wait,
                        ),
                        extra=wait,
                    )
                if time.monotonic() >= deadline:
                    break
        except errors.NotFoundError:
            await self._forget_receiver((t, s, dead))
            raise
        except errors.ConfigError:
            # The service answers a link to a deleted entity with a failed authentication.
            if not await self._exists(t, s):
                await self._forget_receiver((t, s, dead))
                raise self._missing(t, s) from None
            raise
        self._forget_expired()
        return [self._received(topic, subscription, m, (t, s, dead)) for m in got]

    def _received(
        self,
        topic: str,
        subscription: str,
        m: ServiceBusReceivedMessage,
        key: tuple[str, str, bool],
    ) -> ReceivedMessage:
        token = str(m.lock_token)
        self._inflight[token] = _Inflight(m, key)
        now = datetime.now(UTC)
        return ReceivedMessage(
            topic=topic,
            subscription=subscription,
            message_id=str(m.message_id or ""),
            body=_body(m),
            properties=received_properties(m.application_properties),
            delivery_count=(m.delivery_count or 0) + 1,
            lock_token=token,
            locked_until=m.locked_until_utc or now,
            enqueued_at=m.enqueued_time_utc or now,
            sequence_number=m.sequence_number or 0,
        )

    def _forget_expired(self) -> None:
        now = datetime.now(UTC)
        for token, item in list(self._inflight.items()):
            until = item.message.locked_until_utc
            if until is not None and until < now - timedelta(minutes=5):
                del self._inflight[token]

    # -- settlement ---------------------------------------------------------------------

    def _held(self, message: ReceivedMessage) -> tuple[_Inflight, _Receiver]:
        item = self._inflight.get(message.lock_token)
        cached = self._receivers.get(item.key) if item is not None else None
        if item is None or cached is None:
            raise errors.LockLostError(
                f"lock on message {message.message_id!r} in {message.topic}/"
                f"{message.subscription} expired or was settled; the message will be delivered"
                " again"
            )
        return item, cached

    async def _settle(
        self,
        action: str,
        message: ReceivedMessage,
        call: Callable[[ServiceBusReceiver, ServiceBusReceivedMessage], Awaitable[None]],
    ) -> None:
        item, cached = self._held(message)
        try:
            async with cached.lock:
                await self._call(
                    f"{action} message {message.message_id!r}",
                    lambda: call(cached.receiver, item.message),
                )
        except errors.LockLostError:
            self._inflight.pop(message.lock_token, None)
            raise
        # Other failures keep the lock token known, so the caller may retry the settlement.
        self._inflight.pop(message.lock_token, None)

    async def renew_lock(self, message: ReceivedMessage) -> datetime:
        """Extend the message's lock by the lock duration; return the new expiry."""
        item, cached = self._held(message)
        async with cached.lock:
            return await self._call(
                f"renew lock of message {message.message_id!r}",
                lambda: cached.receiver.renew_message_lock(item.message),
            )

    async def complete(self, message: ReceivedMessage) -> None:
        """Remove the message: it was handled."""
        await self._settle("complete", message, lambda r, m: r.complete_message(m))

    async def abandon(self, message: ReceivedMessage) -> None:
        """Release the lock at once so the message is delivered again (delivery count rises)."""
        await self._settle("abandon", message, lambda r, m: r.abandon_message(m))

    async def dead_letter(
        self, message: ReceivedMessage, *, reason: str, description: str = ""
    ) -> None:
        """Move the message to the subscription's dead-letter queue with a reason."""
        await self._settle(
            "dead-letter",
            message,
            lambda r, m: r.dead_letter_message(m, reason=reason, error_description=description),
        )

    # -- inspection ---------------------------------------------------------------------

    async def peek(
        self, topic: str, subscription: str, *, max_messages: int = 10, dead_letter: bool = False
    ) -> list[PeekedMessage]:
        """Return messages without locking them, oldest first (the dead-letter queue if asked).

        `delivery_count` is the number of deliveries that ended without completion.
        """
        t, s = topic_entity(topic), subscription_entity(subscription)
        cached = await self._receiver(t, s, dead_letter)
        async with cached.lock:
            found = await self._call(
                f"peek {t}/{s}",
                lambda: cached.receiver.peek_messages(
                    max_message_count=max_messages, sequence_number=_PEEK_FROM
                ),
            )
        out = []
        for m in found:
            reason, description = dead_letter_details(m.application_properties)
            now = datetime.now(UTC)
            out.append(
                PeekedMessage(
                    message_id=str(m.message_id or ""),
                    body=_body(m),
                    properties=received_properties(m.application_properties),
                    delivery_count=m.delivery_count or 0,
                    enqueued_at=m.enqueued_time_utc or now,
                    sequence_number=m.sequence_number or 0,
                    dead_letter_reason=reason,
                    dead_letter_description=description,
                )
            )
        return out

    async def counts(self, topic: str, subscription: str) -> SubscriptionCounts:
        """Return how many messages the subscription holds.

        Scheduled messages wait at the topic until due, so `scheduled` counts the topic's.
        """
        t, s = topic_entity(topic), subscription_entity(subscription)
        sub = await self._call(
            f"get runtime of {t}/{s}",
            lambda: self._admin.get_subscription_runtime_properties(t, s),
        )
        top = await self._call(
            f"get runtime of {t}", lambda: self._admin.get_topic_runtime_properties(t)
        )
        return SubscriptionCounts(
            active=sub.active_message_count or 0,
            dead_lettered=sub.dead_letter_message_count or 0,
            scheduled=top.scheduled_message_count or 0,
        )

    async def aclose(self) -> None:
        """Close receivers, senders and clients (handlers in parallel); idempotent."""
        if self._closed:
            return
        self._closed = True
        handlers: list[ServiceBusReceiver | ServiceBusSender] = [
            r.receiver for r in self._receivers.values()
        ]
        handlers += list(self._senders.values())
        self._receivers.clear()
        self._senders.clear()
        self._inflight.clear()
        # Each SDK handler owns a connection and waits for its keep-alive task on close.
        await asyncio.gather(*(_close_quietly(h) for h in handlers))
        for closeable in (self._client, self._admin, self._owned_credential):
            if closeable is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._timeout):
                        await closeable.close()


def _body(message: ServiceBusReceivedMessage) -> bytes:
    body = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    return b"".join(bytes(part) for part in body)


async def _close_quietly(handler: ServiceBusReceiver | ServiceBusSender) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(10):
            await handler.close()
