"""Publishing events on the bus: one function for a module's child events and for root events.

Each message's id is its event id (so the bus drops a copy sent twice) and it carries the W3C
trace context of the current span, so one trace follows a flow across the bus.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from opentelemetry import propagate

from ion.core import errors
from ion.core.events import Event
from ion.core.ports.bus import EventBus, OutgoingMessage


async def publish_events(bus: EventBus, events: Sequence[Event]) -> None:
    """Publish events, one batch per event type; a topic nobody created yet is created.

    Raises:
        errors.TransientError: the bus failed; publishing again is safe (same message ids).
    """
    by_topic: dict[str, list[OutgoingMessage]] = defaultdict(list)
    for event in events:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        by_topic[event.type].append(
            OutgoingMessage(body=event.to_json(), message_id=event.event_id, properties=carrier)
        )
    for topic, messages in by_topic.items():
        try:
            await bus.publish(topic, messages)
        except errors.NotFoundError:
            # Nobody subscribes yet; create the topic so the event is accepted (and dropped by
            # the bus only if no subscription ever exists, as Service Bus does).
            await bus.ensure_topic(topic)
            await bus.publish(topic, messages)
