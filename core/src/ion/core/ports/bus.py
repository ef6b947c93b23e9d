"""The EventBus port: topics, subscriptions and peek-lock delivery with Service Bus semantics.

Every backend (SQLite embedded, Azure Service Bus) passes `ion.core.testing.EventBusContract`.
Semantics, which the contract suite pins sentence by sentence:
- a message published to a topic reaches every subscription of that topic (fan-out), unless
  `to_subscription` names one; receivers on one subscription compete;
- `receive` locks each message for the subscription's lock duration; `delivery_count` is 1 on
  the first delivery and rises on every abandon or lock expiry;
- a message whose next delivery would exceed `max_delivery_count` is dead-lettered with reason
  `MaxDeliveryCountExceeded`;
- `complete`, `abandon`, `dead_letter` and `renew_lock` need a valid lock, else `LockLostError`;
- a message id already seen on a topic within the duplicate-detection window is dropped;
- `scheduled_at` holds a message back until then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingMessage:
    """A message to publish."""

    body: bytes
    message_id: str
    properties: Mapping[str, str] = field(default_factory=dict)
    scheduled_at: datetime | None = None
    to_subscription: str | None = None
    """Deliver to this subscription only (used to schedule a retry for one module)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedMessage:
    """A message locked for this receiver."""

    topic: str
    subscription: str
    message_id: str
    body: bytes
    properties: Mapping[str, str]
    delivery_count: int
    lock_token: str
    locked_until: datetime
    enqueued_at: datetime
    sequence_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PeekedMessage:
    """A message seen without locking it (active or dead-lettered)."""

    message_id: str
    body: bytes
    properties: Mapping[str, str]
    delivery_count: int
    enqueued_at: datetime
    sequence_number: int
    dead_letter_reason: str = ""
    dead_letter_description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionOptions:
    """Settings of one subscription."""

    max_delivery_count: int = 10
    lock_duration: timedelta = timedelta(seconds=60)
    duplicate_detection_window: timedelta = timedelta(minutes=10)
    """Applies to the topic; the longest window asked for wins."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionCounts:
    """How many messages a subscription holds, by kind."""

    active: int
    dead_lettered: int
    scheduled: int


class EventBus(Protocol):
    """Topics and subscriptions with peek-lock delivery."""

    async def ensure_topic(self, topic: str) -> None:
        """Create the topic if it does not exist."""
        ...

    async def ensure_subscription(
        self, topic: str, subscription: str, options: SubscriptionOptions
    ) -> None:
        """Create the subscription (and its topic) if missing; update its options if present."""
        ...

    async def delete_subscription(self, topic: str, subscription: str) -> None:
        """Delete the subscription and its messages; succeeds if it is already gone."""
        ...

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        """Publish messages to a topic in one batch (all or none).

        Raises:
            errors.NotFoundError: the topic does not exist.
        """
        ...

    async def receive(
        self, topic: str, subscription: str, *, max_messages: int = 1, max_wait: timedelta
    ) -> list[ReceivedMessage]:
        """Lock and return up to `max_messages`, waiting up to `max_wait` for the first one.

        Raises:
            errors.NotFoundError: the subscription does not exist.
        """
        ...

    async def renew_lock(self, message: ReceivedMessage) -> datetime:
        """Extend the message's lock by the lock duration; return the new expiry."""
        ...

    async def complete(self, message: ReceivedMessage) -> None:
        """Remove the message: it was handled."""
        ...

    async def abandon(self, message: ReceivedMessage) -> None:
        """Release the lock at once so the message is delivered again (delivery count rises)."""
        ...

    async def dead_letter(
        self, message: ReceivedMessage, *, reason: str, description: str = ""
    ) -> None:
        """Move the message to the subscription's dead-letter queue with a reason."""
        ...

    async def peek(
        self, topic: str, subscription: str, *, max_messages: int = 10, dead_letter: bool = False
    ) -> list[PeekedMessage]:
        """Return messages without locking them, oldest first (the dead-letter queue if asked)."""
        ...

    async def receive_dead_letters(
        self, topic: str, subscription: str, *, max_messages: int = 1, max_wait: timedelta
    ) -> list[ReceivedMessage]:
        """Lock and return messages from the dead-letter queue (to replay or purge them)."""
        ...

    async def counts(self, topic: str, subscription: str) -> SubscriptionCounts:
        """Return how many messages the subscription holds."""
        ...

    async def aclose(self) -> None:
        """Release connections; idempotent."""
        ...
