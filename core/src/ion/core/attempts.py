"""How attempts travel on the bus: the attempt headers and the one builder of re-sent messages.

A message carries its attempt number in `ion-attempt` (absent means 1) and the last attempt it
may reach in `ion-max-attempt`. A retry after a failure and a replay of a dead letter are both
copies of the original message for one module's subscription only, with the next attempt
number and a message id derived from it, so duplicate detection drops a copy sent twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ion.core.ports.bus import OutgoingMessage

ATTEMPT_PROPERTY = "ion-attempt"
MAX_ATTEMPT_PROPERTY = "ion-max-attempt"
REDELIVERY_ALLOWANCE = 10
"""Deliveries allowed beyond the retries, for redeliveries after a crash or a lost lock."""


def max_delivery_count(max_attempts: int) -> int:
    """Return the subscription's max delivery count for a module with `max_attempts` attempts."""
    return max_attempts + REDELIVERY_ALLOWANCE


def int_property(properties: Mapping[str, str], key: str, default: int) -> int:
    """Return an integer message property, or `default` if it is absent or not a number."""
    try:
        value = int(properties.get(key, default))
    except (TypeError, ValueError):
        return default
    return value if 0 < value < 1_000_000 else default


def attempt_of(properties: Mapping[str, str]) -> int:
    """Return the attempt number a message carries (1 when it carries none)."""
    return int_property(properties, ATTEMPT_PROPERTY, 1)


def next_attempt_message(
    *,
    body: bytes,
    properties: Mapping[str, str],
    message_id: str,
    attempt: int,
    max_attempt: int,
    subscription: str,
    scheduled_at: datetime | None = None,
) -> OutgoingMessage:
    """Return a copy of a message as attempt `attempt` for one subscription only.

    Used for a retry after a failure (`scheduled_at` after the backoff) and for a replay of a
    dead letter (at once, with a fresh round of attempts up to `max_attempt`).
    """
    return OutgoingMessage(
        body=body,
        message_id=message_id,
        properties={
            **properties,
            ATTEMPT_PROPERTY: str(attempt),
            MAX_ATTEMPT_PROPERTY: str(max_attempt),
        },
        scheduled_at=scheduled_at,
        to_subscription=subscription,
    )


def retry_message_id(event_id: str, module: str, attempt: int) -> str:
    """Return the message id of the retry that starts `attempt` of `module` on an event."""
    return f"{event_id}.{module}.attempt-{attempt}"


def replay_message_id(message_id: str, attempt: int) -> str:
    """Return the message id of a dead letter's replay starting at `attempt`."""
    return f"{message_id}.replay-{attempt}"
