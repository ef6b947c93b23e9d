"""Entity names, property conversion and error mapping for the Service Bus EventBus.

Kept apart from the bus itself so the rules are easy to read and test: Ion names become entity
names within Service Bus limits by a deterministic, readable shortening; properties cross the
wire as strings (the SDK hands received keys and values back as ``bytes``); SDK errors become
`ion.core.errors` by type.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError
from azure.servicebus import exceptions as sb

from ion.core import errors
from ion.core.backends.azure._errors import translate

TOPIC_NAME_LIMIT = 260
SUBSCRIPTION_NAME_LIMIT = 50
ROUTING_PROPERTY = "ion-to"
"""Application property naming the one subscription a message is for (`to_subscription`)."""
DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION = "DeadLetterErrorDescription"
_BROKER_PROPERTIES = frozenset({ROUTING_PROPERTY, DEAD_LETTER_REASON, DEAD_LETTER_DESCRIPTION})
"""Set by Ion's routing or by the service, so not handed to callers as message properties."""

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+")
_SUBSCRIPTION_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EDGE = "-._/"
_SERVER_BUSY_BACKOFF = timedelta(seconds=10)


def _entity(name: str, limit: int, unsafe: re.Pattern[str], what: str) -> str:
    if not name:
        raise errors.ValidationError(f"a {what} name must not be empty", field=what, rule="name")
    clean = unsafe.sub("-", name).strip(_EDGE)
    if clean == name and len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    prefix = clean[: limit - len(digest) - 1].rstrip(_EDGE)
    return f"{prefix}-{digest}" if prefix else digest


def topic_entity(topic: str) -> str:
    """Return the Service Bus topic name of an Ion topic (event type).

    A name that is valid and at most 260 characters is used as is; otherwise unsupported
    characters become '-', and a readable prefix is kept with an 8-hex hash of the whole name,
    so the result is deterministic and distinct names stay distinct.
    """
    return _entity(topic, TOPIC_NAME_LIMIT, _TOPIC_UNSAFE, "topic")


def subscription_entity(subscription: str) -> str:
    """Return the Service Bus subscription name (at most 50 characters) of an Ion subscription."""
    return _entity(subscription, SUBSCRIPTION_NAME_LIMIT, _SUBSCRIPTION_UNSAFE, "subscription")


def routing_filter(subscription_entity_name: str) -> str:
    """The SQL filter of a subscription: broadcast messages, and messages addressed to it."""
    literal = subscription_entity_name.replace("'", "''")
    return f'"{ROUTING_PROPERTY}" IS NULL OR "{ROUTING_PROPERTY}" = \'{literal}\''


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def received_properties(raw: Mapping[Any, Any] | None) -> dict[str, str]:
    """Application properties of a received message, keys and values as ``str``.

    The SDK returns ``bytes`` keys and string values from the wire (and ``str`` ones for
    messages built locally); both are accepted. Routing and dead-letter properties are left out.
    """
    out: dict[str, str] = {}
    for key, value in (raw or {}).items():
        name = _text(key)
        if name not in _BROKER_PROPERTIES and value is not None:
            out[name] = _text(value)
    return out


def dead_letter_details(raw: Mapping[Any, Any] | None) -> tuple[str, str]:
    """(reason, description) that the service set on a dead-lettered message, or empty."""
    props = {_text(k): v for k, v in (raw or {}).items()}
    reason = props.get(DEAD_LETTER_REASON)
    description = props.get(DEAD_LETTER_DESCRIPTION)
    return (
        "" if reason is None else _text(reason),
        "" if description is None else _text(description),
    )


def translate_servicebus(err: BaseException, action: str) -> errors.IonError:
    """Return the Ion error for an SDK error raised while doing `action` (raise it `from err`).

    Lost or stale locks are `LockLostError`; throttling, timeouts and connection trouble are
    `TransientError`; bad credentials are `ConfigError`. The caller checks entity existence
    first where the service reports a missing entity as an authentication failure.
    """
    text = f"{action} failed: {type(err).__name__}: {_first_line(err)}"
    if isinstance(
        err, sb.MessageLockLostError | sb.SessionLockLostError | sb.MessageAlreadySettled
    ):
        return errors.LockLostError(text)
    if isinstance(err, sb.MessagingEntityNotFoundError | sb.MessageNotFoundError):
        return errors.NotFoundError(text)
    if isinstance(err, sb.MessagingEntityAlreadyExistsError):
        return errors.ConflictError(text)
    if isinstance(err, sb.ServiceBusAuthenticationError | sb.ServiceBusAuthorizationError):
        return errors.ConfigError(
            f"{text}; check the Service Bus credentials in the environment and the identity's"
            " role (Azure Service Bus Data Owner)"
        )
    if isinstance(err, sb.MessageSizeExceededError):
        return errors.ValidationError(text, field="body", rule="size")
    if isinstance(err, sb.ServiceBusServerBusyError | sb.ServiceBusQuotaExceededError):
        return errors.TransientError(text, retry_after=_SERVER_BUSY_BACKOFF)
    if isinstance(err, sb.ServiceBusError):
        return errors.TransientError(text)
    if isinstance(err, AzureError):
        return translate(err, action)
    return errors.TransientError(text)


def _first_line(err: BaseException) -> str:
    message = getattr(err, "message", None) or str(err)
    lines = str(message).strip().splitlines()
    return lines[0][:300] if lines else ""
