"""Broker state of the fake Service Bus: topics, subscriptions, rules, messages and locks.

Pure Python and free of I/O, so the AMQP side (reactor thread), the ATOM side (HTTP thread) and
the Python API (test thread) share it behind one re-entrant lock, ``Namespace.lock``. Callers hold
that lock around every call into this module; nothing here takes it on its own except the
``Namespace`` entry points that are documented to.

Delivery-count semantics follow the service as the Python SDK reports it: the AMQP header
``delivery-count`` (what ``ServiceBusReceivedMessage.delivery_count`` returns) is the number of
*earlier* deliveries that ended without completion, so the first delivery reports 0. After the
lock of the ``max_delivery_count``-th delivery is abandoned or expires, the message is
dead-lettered with reason ``MaxDeliveryCountExceeded``.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from proton import Message

#: What the service reports for "never" (TimeSpan.MaxValue), in seconds.
MAX_TIMESPAN_SECONDS = 10675199 * 86400 + 2 * 3600 + 48 * 60 + 5.4775807

DEFAULT_LOCK_DURATION = 60.0
DEFAULT_MAX_DELIVERY_COUNT = 10
DEFAULT_DUPLICATE_WINDOW = 600.0
DEFAULT_RULE_NAME = "$Default"

MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
TTL_EXPIRED = "TTLExpiredException"


class FakeServiceBusError(Exception):
    """Base of the errors the model raises; the protocol layers map them to wire errors."""


class EntityNotFound(FakeServiceBusError):
    """The topic, subscription or rule does not exist (AMQP ``amqp:not-found``, HTTP 404)."""


class EntityExists(FakeServiceBusError):
    """The entity already exists (HTTP 409)."""


class LockLost(FakeServiceBusError):
    """The lock token is unknown or expired (``com.microsoft:message-lock-lost``, 410)."""


class MessageNotFound(FakeServiceBusError):
    """No scheduled message has that sequence number (``com.microsoft:message-not-found``)."""


class NotAllowed(FakeServiceBusError):
    """The operation is valid Service Bus but outside what the fake supports, or not allowed."""


class UnsupportedFilter(FakeServiceBusError, ValueError):
    """A rule filter other than TrueFilter, FalseFilter or Ion's ``ion-to`` SQL filter."""


# --------------------------------------------------------------------------------------------
# Rule filters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrueFilter:
    """Matches every message (the ``$Default`` rule)."""

    sql_expression: str = "1=1"

    def matches(self, properties: dict[str, Any]) -> bool:
        return True


@dataclass(frozen=True)
class FalseFilter:
    """Matches no message."""

    sql_expression: str = "1=0"

    def matches(self, properties: dict[str, Any]) -> bool:
        return False


@dataclass(frozen=True)
class IonToFilter:
    """``"ion-to" IS NULL OR "ion-to" = '<value>'``: Ion's address-one-subscriber rule."""

    value: str
    sql_expression: str

    def matches(self, properties: dict[str, Any]) -> bool:
        target = properties.get("ion-to")
        return target is None or target == self.value


RuleFilter = TrueFilter | FalseFilter | IonToFilter

_IDENT = r'(?:"ion-to"|\[ion-to\])'
_ION_TO_RE = re.compile(
    rf"^\s*{_IDENT}\s+IS\s+NULL\s+OR\s+{_IDENT}\s*=\s*'(?P<value>(?:[^']|'')*)'\s*$",
    re.IGNORECASE,
)
_TRUE_RE = re.compile(r"^\s*1\s*=\s*1\s*$")
_FALSE_RE = re.compile(r"^\s*1\s*=\s*0\s*$")


def parse_sql_filter(expression: str) -> RuleFilter:
    """Parse the SQL filter shapes the fake supports, or raise ``UnsupportedFilter``."""
    if _TRUE_RE.match(expression):
        return TrueFilter(expression)
    if _FALSE_RE.match(expression):
        return FalseFilter(expression)
    match = _ION_TO_RE.match(expression)
    if match:
        return IonToFilter(match.group("value").replace("''", "'"), expression)
    raise UnsupportedFilter(
        f"the fake Service Bus supports only TrueFilter, FalseFilter and the SQL filter "
        f"'\"ion-to\" IS NULL OR \"ion-to\" = '<name>'', not {expression!r}"
    )


@dataclass
class Rule:
    """A subscription rule; only the filter is evaluated (rule actions are not supported)."""

    name: str
    filter: RuleFilter
    created_at: float


# --------------------------------------------------------------------------------------------
# Messages and queues
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class StoredMessage:
    """One copy of a message in one queue (a subscription or its dead-letter queue)."""

    raw: bytes
    """The message as the sender encoded it (one AMQP message, sections only)."""
    sequence_number: int
    enqueued_time: float
    expires_at: float | None
    message_id: str | None
    position: int = 0
    delivery_count: int = 0
    lock_token: uuid.UUID | None = None
    locked_until: float | None = None
    extra_properties: dict[str, Any] = field(default_factory=dict)
    """Application properties the broker adds, e.g. ``DeadLetterReason``."""

    def copy_for(self, position: int) -> StoredMessage:
        """A fresh, unlocked copy for another queue."""
        return StoredMessage(
            raw=self.raw,
            sequence_number=self.sequence_number,
            enqueued_time=self.enqueued_time,
            expires_at=self.expires_at,
            message_id=self.message_id,
            position=position,
            delivery_count=self.delivery_count,
            extra_properties=dict(self.extra_properties),
        )


class MessageQueue:
    """The messages of a subscription, or of its ``$DeadLetterQueue``, with their locks."""

    def __init__(self, subscription: Subscription, *, dead_letter: bool) -> None:
        self.subscription = subscription
        self.dead_letter = dead_letter
        self.messages: dict[int, StoredMessage] = {}  # by position
        self.locks: dict[uuid.UUID, StoredMessage] = {}
        self._next_position = 1
        self.deleted = False

    @property
    def path(self) -> str:
        base = f"{self.subscription.topic.name}/Subscriptions/{self.subscription.name}"
        return base + "/$DeadLetterQueue" if self.dead_letter else base

    def enqueue(self, message: StoredMessage) -> None:
        message.position = self._next_position
        self._next_position += 1
        self.messages[message.position] = message

    def _available(self, now: float) -> Iterator[StoredMessage]:
        for message in sorted(self.messages.values(), key=lambda m: m.position):
            if message.lock_token is None and not _expired(message, now):
                yield message

    def acquire(self, now: float, *, delete: bool = False) -> StoredMessage | None:
        """Lock (peek-lock) or remove (receive-and-delete) the next available message."""
        message = next(self._available(now), None)
        if message is None:
            return None
        if delete:
            del self.messages[message.position]
            return message
        message.lock_token = uuid.uuid4()
        message.locked_until = now + self.subscription.lock_duration
        self.locks[message.lock_token] = message
        return message

    def _locked(self, token: uuid.UUID, now: float) -> StoredMessage:
        message = self.locks.get(token)
        if message is None:
            raise LockLost(f"the lock {token} is not held on {self.path}")
        if message.locked_until is not None and message.locked_until <= now:
            self._unlock(message, failed=True, now=now)
            raise LockLost(f"the lock {token} on {self.path} expired")
        return message

    def complete(self, token: uuid.UUID, now: float) -> None:
        message = self._locked(token, now)
        del self.locks[token]
        del self.messages[message.position]

    def abandon(self, token: uuid.UUID, now: float) -> None:
        self._unlock(self._locked(token, now), failed=True, now=now)

    def release(self, token: uuid.UUID, now: float) -> None:
        """Unlock without counting a failed delivery (AMQP ``released``)."""
        message = self.locks.get(token)
        if message is not None:
            self._unlock(message, failed=False, now=now)

    def renew(self, token: uuid.UUID, now: float) -> float:
        message = self._locked(token, now)
        message.locked_until = now + self.subscription.lock_duration
        return message.locked_until

    def dead_letter_locked(
        self, token: uuid.UUID, now: float, reason: str | None, description: str | None
    ) -> None:
        if self.dead_letter:
            raise NotAllowed(f"a message in {self.path} cannot be dead-lettered again")
        message = self._locked(token, now)
        del self.locks[token]
        del self.messages[message.position]
        self._to_dead_letter(message, reason, description)

    def _to_dead_letter(
        self, message: StoredMessage, reason: str | None, description: str | None
    ) -> None:
        copy = message.copy_for(0)
        if reason is not None:
            copy.extra_properties["DeadLetterReason"] = reason
        if description is not None:
            copy.extra_properties["DeadLetterErrorDescription"] = description
        copy.expires_at = None  # the dead-letter queue does not expire messages
        self.subscription.dead_letter_queue.enqueue(copy)

    def _unlock(self, message: StoredMessage, *, failed: bool, now: float) -> None:
        if message.lock_token is not None:
            self.locks.pop(message.lock_token, None)
        message.lock_token = None
        message.locked_until = None
        if not failed:
            return
        message.delivery_count += 1
        limit = self.subscription.max_delivery_count
        if not self.dead_letter and message.delivery_count >= limit:
            del self.messages[message.position]
            self._to_dead_letter(
                message,
                MAX_DELIVERY_COUNT_EXCEEDED,
                f"Message could not be consumed after {limit} delivery attempts.",
            )

    def expire(self, now: float) -> None:
        """Expire due locks (a failed delivery) and due messages (TTL)."""
        for message in list(self.locks.values()):
            if message.locked_until is not None and message.locked_until <= now:
                self._unlock(message, failed=True, now=now)
        if self.dead_letter:
            return
        for message in list(self.messages.values()):
            if message.lock_token is None and _expired(message, now):
                del self.messages[message.position]
                if self.subscription.dead_lettering_on_message_expiration:
                    self._to_dead_letter(
                        message, TTL_EXPIRED, "The message expired and was dead lettered."
                    )

    def peek(self, from_sequence_number: int, count: int) -> list[StoredMessage]:
        found = sorted(
            (m for m in self.messages.values() if m.sequence_number >= from_sequence_number),
            key=lambda m: m.sequence_number,
        )
        return found[:count]

    def counts(self) -> tuple[int, int]:
        """(all messages, of which locked)."""
        return len(self.messages), len(self.locks)


def _expired(message: StoredMessage, now: float) -> bool:
    return message.expires_at is not None and message.expires_at <= now


# --------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------


@dataclass
class Subscription:
    """A topic subscription; its rules decide which published messages it receives."""

    topic: Topic
    name: str
    lock_duration: float = DEFAULT_LOCK_DURATION
    max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT
    default_message_time_to_live: float | None = None
    dead_lettering_on_message_expiration: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    rules: dict[str, Rule] = field(default_factory=dict)
    queue: MessageQueue = field(init=False)
    dead_letter_queue: MessageQueue = field(init=False)

    def __post_init__(self) -> None:
        self.queue = MessageQueue(self, dead_letter=False)
        self.dead_letter_queue = MessageQueue(self, dead_letter=True)

    def accepts(self, properties: dict[str, Any]) -> bool:
        return any(rule.filter.matches(properties) for rule in self.rules.values())


@dataclass
class ScheduledMessage:
    """A message waiting at its topic for its scheduled enqueue time."""

    raw: bytes
    properties: dict[str, Any]
    message_id: str | None
    sequence_number: int
    enqueue_at: float
    ttl: float | None


@dataclass
class Topic:
    """A topic: assigns sequence numbers, detects duplicates, holds scheduled messages."""

    name: str
    requires_duplicate_detection: bool = False
    duplicate_detection_history_time_window: float = DEFAULT_DUPLICATE_WINDOW
    default_message_time_to_live: float | None = None
    max_size_in_megabytes: int = 1024
    created_at: float = 0.0
    updated_at: float = 0.0
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    scheduled: dict[int, ScheduledMessage] = field(default_factory=dict)
    duplicate_history: dict[str, float] = field(default_factory=dict)
    next_sequence_number: int = 1
    deleted: bool = False

    def subscription(self, name: str) -> Subscription:
        try:
            return self.subscriptions[name.lower()]
        except KeyError:
            raise EntityNotFound(f"subscription {self.name}/Subscriptions/{name}") from None

    def _is_duplicate(self, message_id: str | None, now: float) -> bool:
        if not self.requires_duplicate_detection or message_id is None:
            return False
        seen = self.duplicate_history.get(message_id)
        if seen is not None and now - seen < self.duplicate_detection_history_time_window:
            return True
        self.duplicate_history[message_id] = now
        return False

    def publish(self, raw: bytes, now: float) -> int | None:
        """Accept one encoded message; return its sequence number, or None for a duplicate."""
        message = Message()
        message.decode(raw)
        message_id = None if message.id is None else str(message.id)
        if self._is_duplicate(message_id, now):
            return None
        sequence_number = self.next_sequence_number
        self.next_sequence_number += 1
        properties: dict[str, Any] = dict(message.properties or {})
        ttl = message.ttl if message.ttl else None
        scheduled_at = _scheduled_enqueue_time(message)
        if scheduled_at is not None and scheduled_at > now:
            self.scheduled[sequence_number] = ScheduledMessage(
                raw, properties, message_id, sequence_number, scheduled_at, ttl
            )
        else:
            self._fan_out(raw, properties, message_id, sequence_number, now, ttl)
        return sequence_number

    def _fan_out(
        self,
        raw: bytes,
        properties: dict[str, Any],
        message_id: str | None,
        sequence_number: int,
        now: float,
        ttl: float | None,
    ) -> None:
        for subscription in self.subscriptions.values():
            if not subscription.accepts(properties):
                continue
            limits = [
                t
                for t in (
                    ttl,
                    self.default_message_time_to_live,
                    subscription.default_message_time_to_live,
                )
                if t is not None
            ]
            subscription.queue.enqueue(
                StoredMessage(
                    raw=raw,
                    sequence_number=sequence_number,
                    enqueued_time=now,
                    expires_at=now + min(limits) if limits else None,
                    message_id=message_id,
                )
            )

    def cancel_scheduled(self, sequence_number: int) -> None:
        if self.scheduled.pop(sequence_number, None) is None:
            raise MessageNotFound(
                f"no scheduled message with sequence number {sequence_number} on {self.name}"
            )

    def release_due(self, now: float) -> None:
        for sequence_number in sorted(self.scheduled):
            item = self.scheduled[sequence_number]
            if item.enqueue_at <= now:
                del self.scheduled[sequence_number]
                self._fan_out(
                    item.raw, item.properties, item.message_id, sequence_number, now, item.ttl
                )
        window = self.duplicate_detection_history_time_window
        for message_id, seen in list(self.duplicate_history.items()):
            if now - seen >= window:
                del self.duplicate_history[message_id]


def _scheduled_enqueue_time(message: Message) -> float | None:
    annotations: dict[Any, Any] = dict(message.annotations or {})
    value = annotations.get("x-opt-scheduled-enqueue-time")
    if value is None:
        return None
    if hasattr(value, "timestamp"):  # a datetime
        return float(value.timestamp())
    return int(value) / 1000.0


@dataclass(frozen=True)
class ResolvedAddress:
    """What an AMQP address names."""

    topic: Topic
    queue: MessageQueue | None
    management: bool


class Namespace:
    """All entities of one fake namespace, guarded by ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.topics: dict[str, Topic] = {}

    # -- entity management (callers hold ``lock``) ----------------------------------------

    def topic(self, name: str) -> Topic:
        try:
            return self.topics[name.lower()]
        except KeyError:
            raise EntityNotFound(f"topic {name}") from None

    def create_topic(self, name: str, now: float, **properties: Any) -> Topic:
        _check_name(name, 260)
        if name.lower() in self.topics:
            raise EntityExists(f"topic {name} already exists")
        topic = Topic(name=name, created_at=now, updated_at=now, **properties)
        self.topics[name.lower()] = topic
        return topic

    def delete_topic(self, name: str) -> None:
        topic = self.topic(name)
        del self.topics[name.lower()]
        topic.deleted = True
        for subscription in topic.subscriptions.values():
            subscription.queue.deleted = subscription.dead_letter_queue.deleted = True

    def create_subscription(
        self, topic_name: str, name: str, now: float, **properties: Any
    ) -> Subscription:
        _check_name(name, 50)
        topic = self.topic(topic_name)
        if name.lower() in topic.subscriptions:
            raise EntityExists(f"subscription {topic.name}/Subscriptions/{name} already exists")
        subscription = Subscription(
            topic=topic, name=name, created_at=now, updated_at=now, **properties
        )
        subscription.rules[DEFAULT_RULE_NAME.lower()] = Rule(DEFAULT_RULE_NAME, TrueFilter(), now)
        topic.subscriptions[name.lower()] = subscription
        return subscription

    def delete_subscription(self, topic_name: str, name: str) -> None:
        topic = self.topic(topic_name)
        subscription = topic.subscription(name)
        del topic.subscriptions[name.lower()]
        subscription.queue.deleted = subscription.dead_letter_queue.deleted = True

    def create_rule(
        self,
        topic_name: str,
        subscription_name: str,
        name: str,
        rule_filter: RuleFilter,
        now: float,
    ) -> Rule:
        _check_name(name, 50)
        subscription = self.topic(topic_name).subscription(subscription_name)
        if name.lower() in subscription.rules:
            raise EntityExists(f"rule {name} already exists on {subscription.name}")
        rule = Rule(name, rule_filter, now)
        subscription.rules[name.lower()] = rule
        return rule

    def delete_rule(self, topic_name: str, subscription_name: str, name: str) -> None:
        subscription = self.topic(topic_name).subscription(subscription_name)
        if subscription.rules.pop(name.lower(), None) is None:
            raise EntityNotFound(f"rule {name} on {subscription.name}")

    # -- addressing ---------------------------------------------------------------------

    def resolve(self, address: str) -> ResolvedAddress:
        """Map a (normalised, see ``normalise_address``) AMQP address to its entity."""
        parts = address.split("/")
        management = parts[-1] == "$management"
        if management:
            parts = parts[:-1]
        topic = self.topic(parts[0]) if parts and parts[0] else None
        if topic is None:
            raise EntityNotFound(f"no entity at {address!r}")
        if len(parts) == 1:
            return ResolvedAddress(topic, None, management)
        if len(parts) in (3, 4) and parts[1] == "subscriptions":
            subscription = topic.subscription(parts[2])
            if len(parts) == 3:
                return ResolvedAddress(topic, subscription.queue, management)
            if parts[3] == "$deadletterqueue":
                return ResolvedAddress(topic, subscription.dead_letter_queue, management)
        raise EntityNotFound(f"no entity at {address!r}")

    # -- time ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Release due scheduled messages, expire locks and TTLs (caller holds ``lock``)."""
        for topic in self.topics.values():
            topic.release_due(now)
            for subscription in topic.subscriptions.values():
                subscription.queue.expire(now)
                subscription.dead_letter_queue.expire(now)


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/~$]*$")


def _check_name(name: str, limit: int) -> None:
    if not name or len(name) > limit or not _NAME_RE.match(name):
        raise NotAllowed(f"invalid entity name {name!r} (at most {limit} characters)")


def normalise_address(address: str | None) -> str:
    """``amqp://host:port/Topic/Subscriptions/S`` -> ``topic/subscriptions/s``."""
    if not address:
        return ""
    text = address
    match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*/?", text)
    if match:
        text = text[match.end() :]
    return text.strip("/").lower()
