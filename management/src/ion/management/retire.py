"""Retiring a module's subscription without losing an event: dead letters kept, runs settled.

Deleting a subscription deletes its messages. Before a deleted module's subscription goes,
`retire` keeps every message it still holds as a dead letter of the module's *parked*
location (topic `ion.deleted-modules`, subscription = the module id), where nothing else is
ever published: queued, scheduled and locked messages with reason `ModuleDeleted`, earlier
dead letters with their own reason. `ion event dlq list` lists them under the deleted module's
id, and `ion event dlq replay` sends one to the live module of the same name.

It also settles the module's runs, so no flow shows RUNNING or PENDING for a module that is
gone: the attempt of every message kept and every attempt left RUNNING, PENDING or waiting for
a retry is recorded CANCELLED with the reason.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ion.core import attempts, errors, naming
from ion.core.events import Event
from ion.core.ports.bus import EventBus, OutgoingMessage, PeekedMessage, SubscriptionOptions
from ion.core.ports.meta import MetadataStore
from ion.core.records import AttemptState, JobAttempt, ModuleRecord

log = logging.getLogger(__name__)

PARK_TOPIC = "ion.deleted-modules"
"""Topic of every parked subscription; no event type may look like it (no module raises it)."""
MODULE_DELETED = "ModuleDeleted"
"""Dead-letter reason of an event its module was deleted before it ran."""
PARKED_FROM = "ion-parked-message-id"
"""Property of a parked message: the message id it had on the module's subscription."""
_REASON = "ion-parked-reason"
_DESCRIPTION = "ion-parked-description"
PARK_LIMIT = 10_000
"""Most messages kept per retirement (the bus peeks at most this many)."""
_BATCH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Retired:
    """What retiring a subscription did."""

    dead_lettered: int = 0
    """Messages kept as dead letters of the parked location."""
    cancelled: int = 0
    """Runs recorded CANCELLED."""


def parked_location(record: ModuleRecord) -> tuple[str, str]:
    """Return (topic, subscription) where a deleted module's dead letters are kept."""
    return PARK_TOPIC, naming.shorten(record.id.lower(), 50)


def module_location(record: ModuleRecord) -> tuple[str, str]:
    """Return (topic, subscription) the module's dispatchers read."""
    topic = record.spec.subscribes_to
    return topic, naming.subscription_name(topic, record.spec.name)


async def _peek(
    bus: EventBus, topic: str, subscription: str, *, dead_letter: bool
) -> list[PeekedMessage]:
    try:
        return await bus.peek(topic, subscription, max_messages=PARK_LIMIT, dead_letter=dead_letter)
    except errors.NotFoundError:
        return []


async def retire(
    bus: EventBus,
    meta: MetadataStore,
    record: ModuleRecord,
    *,
    why: str,
    now: datetime | None = None,
) -> Retired:
    """Keep the subscription's messages as dead letters, cancel the module's open runs, and
    delete the subscription. Call once no dispatcher of the module receives any more.

    `why`: one line saying what happened ("module q-ab12c was deleted with --force"); it
    becomes the reason of the CANCELLED attempts and the dead letters' description.
    """
    now = now or datetime.now(UTC)
    topic, subscription = module_location(record)
    queued = await _peek(bus, topic, subscription, dead_letter=False)
    dead = await _peek(bus, topic, subscription, dead_letter=True)
    description = (
        f"{why}; `ion event dlq replay --module {record.id} --message-id <id>` sends it to"
        f" the module named {record.spec.name} once one subscribes to {topic} again"
    )
    kept = await _park(bus, record, queued, dead, description=description)
    cancelled = await _cancel_runs(meta, record, queued, why=why, now=now)
    await bus.delete_subscription(topic, subscription)
    log.info(
        "retired module %s: %d dead letter(s) kept, %d run(s) cancelled",
        record.id,
        kept,
        cancelled,
        extra={"ion_module": record.id},
    )
    return Retired(dead_lettered=kept, cancelled=cancelled)


async def _park(
    bus: EventBus,
    record: ModuleRecord,
    queued: list[PeekedMessage],
    dead: list[PeekedMessage],
    *,
    description: str,
) -> int:
    if not queued and not dead:
        return 0
    park_topic, park_subscription = parked_location(record)
    await bus.ensure_subscription(
        park_topic,
        park_subscription,
        SubscriptionOptions(max_delivery_count=10, lock_duration=timedelta(seconds=60)),
    )
    outgoing = [
        _parked(record, m, MODULE_DELETED, description, park_subscription) for m in queued
    ] + [
        _parked(
            record,
            m,
            m.dead_letter_reason or "DeadLettered",
            m.dead_letter_description,
            park_subscription,
        )
        for m in dead
    ]
    for start in range(0, len(outgoing), _BATCH):
        await bus.publish(park_topic, outgoing[start : start + _BATCH])
    kept = 0
    while kept < len(outgoing):
        got = await bus.receive(
            park_topic,
            park_subscription,
            max_messages=_BATCH,
            max_wait=timedelta(milliseconds=200),
        )
        if not got:
            break
        for message in got:
            await bus.dead_letter(
                message,
                reason=message.properties.get(_REASON, MODULE_DELETED),
                description=message.properties.get(_DESCRIPTION, "")[:1000],
            )
            kept += 1
    return kept


def _parked(
    record: ModuleRecord, message: PeekedMessage, reason: str, description: str, subscription: str
) -> OutgoingMessage:
    return OutgoingMessage(
        body=message.body,
        message_id=naming.shorten(f"{record.id}.{message.message_id}", 128),
        properties={
            **message.properties,
            PARKED_FROM: message.message_id,
            _REASON: reason,
            _DESCRIPTION: description[:1000],
        },
        to_subscription=subscription,
    )


async def _cancel_runs(
    meta: MetadataStore,
    record: ModuleRecord,
    queued: list[PeekedMessage],
    *,
    why: str,
    now: datetime,
) -> int:
    """Record CANCELLED for the runs the module leaves open; return how many."""
    name = record.spec.name
    written: set[str] = set()
    reason = f"cancelled: {why}"
    for message in queued:
        try:
            event = Event.from_json(message.body)
        except errors.PoisonMessageError:
            continue
        attempt = attempts.attempt_of(message.properties)
        job = naming.job_id(name, event.event_id, attempt)
        if job in written:
            continue
        try:
            known: JobAttempt | None = await meta.get_attempt(event.correlation_id, job)
        except errors.NotFoundError:
            known = None
        if known is not None and known.state not in (AttemptState.RUNNING, AttemptState.PENDING):
            continue
        await meta.upsert_attempt(
            JobAttempt(
                id=job,
                module=name,
                event_id=event.event_id,
                correlation_id=event.correlation_id,
                parent_event_id=event.context.parent_event_id,
                event_type=event.type,
                attempt=attempt,
                state=AttemptState.CANCELLED,
                started_at=known.started_at if known else now,
                finished_at=now,
                reason=reason,
                dispatcher=known.dispatcher if known else "",
                route=known.route if known else None,
            )
        )
        written.add(job)
    last: dict[str, JobAttempt] = {}
    for a in await meta.list_attempts(module=name):
        if a.started_at is not None and a.started_at < record.created_at:
            continue  # an earlier module of the same name
        if a.event_id not in last or a.attempt > last[a.event_id].attempt:
            last[a.event_id] = a
    for a in last.values():
        if a.id in written:
            continue
        if a.state in (AttemptState.RUNNING, AttemptState.PENDING):
            await meta.upsert_attempt(
                a.evolve(state=AttemptState.CANCELLED, finished_at=now, reason=reason)
            )
        elif a.state == AttemptState.FAILED:  # a retry was due: it never comes
            job = naming.job_id(name, a.event_id, a.attempt + 1)
            if job in written:
                continue
            await meta.upsert_attempt(
                a.evolve(
                    id=job,
                    attempt=a.attempt + 1,
                    state=AttemptState.CANCELLED,
                    started_at=now,
                    finished_at=now,
                    exit_code=None,
                    reason=reason,
                    logs_ref="",
                    outputs=[],
                    child_event_ids=[],
                )
            )
        else:
            continue
        written.add(a.id)
    return len(written)


async def parked_dead_letters(
    bus: EventBus, record: ModuleRecord, *, max_messages: int
) -> list[PeekedMessage]:
    """Return a deleted module's kept dead letters, oldest first (none if it kept none)."""
    topic, subscription = parked_location(record)
    try:
        return await bus.peek(topic, subscription, max_messages=max_messages, dead_letter=True)
    except errors.NotFoundError:
        return []


async def replay_parked(
    bus: EventBus, deleted: ModuleRecord, live: ModuleRecord, message_id: str
) -> None:
    """Send one kept dead letter of `deleted` to `live` (a module of the same name) for a
    fresh round of attempts, and remove it from the kept ones.

    Raises:
        errors.NotFoundError: `deleted` keeps no dead letter of that id.
    """
    park_topic, park_subscription = parked_location(deleted)
    topic, subscription = module_location(live)
    found = None
    held = []
    try:
        while True:
            try:
                batch = await bus.receive_dead_letters(
                    park_topic,
                    park_subscription,
                    max_messages=50,
                    max_wait=timedelta(milliseconds=200),
                )
            except errors.NotFoundError:
                break
            if not batch:
                break
            for m in batch:
                if found is None and message_id in (m.message_id, m.properties.get(PARKED_FROM)):
                    found = m
                else:
                    held.append(m)
    finally:
        for m in held:
            with contextlib.suppress(errors.IonError):
                await bus.abandon(m)
    if found is None:
        raise errors.NotFoundError(
            f"no dead letter {message_id!r} kept for deleted module {deleted.id!r}"
        )
    properties = {
        k: v for k, v in found.properties.items() if k not in (PARKED_FROM, _REASON, _DESCRIPTION)
    }
    last = attempts.attempt_of(properties)
    replay = attempts.next_attempt_message(
        body=found.body,
        properties=properties,
        message_id=attempts.replay_message_id(found.message_id, last + 1),
        attempt=last + 1,
        max_attempt=last + live.spec.max_attempts,
        subscription=subscription,
    )
    await bus.publish(topic, [replay])
    await bus.complete(found)
