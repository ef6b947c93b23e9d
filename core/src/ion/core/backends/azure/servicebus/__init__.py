"""The Azure Service Bus backend of the EventBus port (``servicebus://<namespace>``).

`ServiceBusEventBus` lives in `_bus`, its options and credential resolution in `_config`, and
entity naming, property conversion and error mapping in `_support`; this module is the stable
import path (the backend factory imports `ServiceBusEventBus` from here).
"""

from ion.core.backends.azure.servicebus._bus import ServiceBusEventBus
from ion.core.backends.azure.servicebus._config import (
    ENV_ADMIN_CONNECTION_STRING,
    ENV_ADMIN_VERIFY_TLS,
    ENV_CONNECTION_STRING,
    ServiceBusOptions,
)
from ion.core.backends.azure.servicebus._support import subscription_entity, topic_entity

__all__ = [
    "ENV_ADMIN_CONNECTION_STRING",
    "ENV_ADMIN_VERIFY_TLS",
    "ENV_CONNECTION_STRING",
    "ServiceBusEventBus",
    "ServiceBusOptions",
    "subscription_entity",
    "topic_entity",
]
