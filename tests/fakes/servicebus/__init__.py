"""A wire-level fake of Azure Service Bus for tests (never shipped).

The unmodified azure-servicebus SDK (``azure.servicebus.aio`` and the sync API) talks to it over
real AMQP 1.0 (python-qpid-proton broker on a background thread) and, for
``ServiceBusAdministrationClient``, over real HTTPS/ATOM::

    with FakeServiceBus() as sb:
        sb.create_topic("jobs")
        sb.create_subscription("jobs", "dispatcher", lock_duration=2, max_delivery_count=3)
        client = ServiceBusClient.from_connection_string(sb.connection_string)
        admin = sb.admin_client()   # HTTPS with the fake's self-signed CA

Covered:
  * SASL ANONYMOUS/PLAIN, ``$cbs`` put-token (every token is accepted);
  * topics with subscriptions: single and batch sends, fan-out to every matching subscription,
    competing receivers on one subscription (round-robin), case-insensitive addresses;
  * peek-lock with per-subscription lock duration, lock expiry, renew-lock, delivery counts
    as the SDK reports them (first delivery = 0), auto dead-letter with
    ``MaxDeliveryCountExceeded``; receive-and-delete mode;
  * settlement by link disposition (complete / abandon / dead-letter with reason and
    description / release) and by ``com.microsoft:update-disposition`` on ``$management``
    (completed / abandoned / suspended); lock-lost errors for expired or unknown locks;
  * ``<topic>/Subscriptions/<sub>/$DeadLetterQueue`` with ``DeadLetterReason`` and
    ``DeadLetterErrorDescription`` application properties;
  * scheduled messages (``schedule_messages`` and ``scheduled_enqueue_time_utc`` on a send),
    cancel-scheduled-message, peek-message (does not lock);
  * duplicate detection by message-id within the topic's window (when the topic requires it);
  * message TTL (message, topic and subscription defaults; dead-lettering on expiration);
  * rules: TrueFilter, FalseFilter and exactly ``"ion-to" IS NULL OR "ion-to" = '<name>'``
    (``[ion-to]`` also accepted); a message matching several rules is delivered once;
  * entity management: the SDK admin client (HTTPS, see ``FakeServiceBus.admin_client``) or the
    Python API (``create_topic``, ``create_subscription``, ``set_sql_rule`` ...). The AMQP side
    never auto-creates entities. As on the service, ``$cbs`` put-token for an unknown entity
    answers 404 (the SDK raises ``ServiceBusAuthenticationError``), attaches to unknown
    addresses are detached with ``amqp:not-found``, and deleting an entity detaches its links.

Admin client: azure-servicebus 7.15 always speaks HTTPS to the Endpoint's host:port, ignoring
``UseDevelopmentEmulator`` for the scheme, so the fake serves ATOM on its own HTTPS port with a
self-signed certificate: use ``admin_connection_string`` with ``admin_client_kwargs``
(``connection_verify=<CA file>``), or just ``admin_client()``.

``sb.errors`` lists exceptions raised inside the fake (its own bugs); the fixture asserts it stays
empty.

Not covered: queues, sessions, deferral (defer / receive-deferred), transactions, auto-forwarding,
rule actions and any other SQL filter or correlation filter (refused with an error), partitioned
or premium entities, quotas and message-size limits beyond a 256 KiB link limit, authentication
(any token and any SAS key are accepted), TLS on the AMQP port, ``$DeadLetterQueue`` of a
dead-letter queue, ``x-opt-deadletter-source``, throttling and server-busy errors, persistence
(state lives in memory for the life of the ``FakeServiceBus``).
"""

from ._model import (
    EntityExists,
    EntityNotFound,
    FakeServiceBusError,
    LockLost,
    NotAllowed,
    UnsupportedFilter,
    parse_sql_filter,
)
from ._server import FakeServiceBus, SubscriptionCounts, fake_servicebus_fixture

__all__ = [
    "EntityExists",
    "EntityNotFound",
    "FakeServiceBus",
    "FakeServiceBusError",
    "LockLost",
    "NotAllowed",
    "SubscriptionCounts",
    "UnsupportedFilter",
    "fake_servicebus_fixture",
    "parse_sql_filter",
]
