"""Dead letters of the registry's modules: list them with their reasons, replay one.

The one implementation behind `ion event dlq list|replay` (the gRPC `DeadLetterService`) and the
web console's dead-letter page, so both show the same letters and replay them the same way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ion.core import Event, ModuleRecord, errors
from ion.core.ports import PeekedMessage
from ion.management import retire
from ion.management.dataplane import Platform
from ion.management.registry import ModuleRegistry, subscription_of

MAX_PEEK = 1000
"""Most dead letters read from one module at once."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """One dead-lettered message of a module, with its event when the body is one."""

    module: ModuleRecord
    topic: str
    subscription: str
    message: PeekedMessage
    event: Event | None
    """The event the message carries; None when its body is not a valid event."""


async def list_dead_letters(
    platform: Platform, registry: ModuleRegistry, module: str = "", *, max_messages: int = 100
) -> list[DeadLetter]:
    """Return the dead letters of `module` (an id or name; every module when empty), oldest
    first within each module, at most `max_messages` (capped at `MAX_PEEK`) per module. A
    deleted module's are those its delete kept (`ion.management.retire`).

    Raises:
        errors.NotFoundError: `module` names no module.
    """
    count = min(max_messages or 100, MAX_PEEK)
    records = (
        [await registry.resolve(module)]
        if module
        else await registry.list_modules(include_deleted=True)
    )
    found: list[DeadLetter] = []
    for record in records:
        if record.deleted:
            topic, subscription = retire.parked_location(record)
            messages = await retire.parked_dead_letters(platform.bus, record, max_messages=count)
        else:
            topic, subscription = subscription_of(record)
            try:
                messages = await platform.bus.peek(
                    topic, subscription, max_messages=count, dead_letter=True
                )
            except errors.NotFoundError:
                continue
        for message in messages:
            event = None
            with contextlib.suppress(errors.PoisonMessageError):
                event = Event.from_json(message.body)
            found.append(
                DeadLetter(
                    module=record,
                    topic=topic,
                    subscription=subscription,
                    message=message,
                    event=event,
                )
            )
    return found


async def _full_message_id(
    platform: Platform, registry: ModuleRegistry, record: ModuleRecord, ref: str
) -> str:
    """The message id `ref` names among the module's dead letters: itself, or the one id that
    starts with it (the 8-character event ids trees print); unmatched, `ref` as given.

    Raises:
        errors.ValidationError: `ref` starts several dead letters' ids.
    """
    letters = await list_dead_letters(platform, registry, record.id, max_messages=MAX_PEEK)
    ids = sorted({letter.message.message_id for letter in letters})
    if ref in ids:
        return ref
    matches = [i for i in ids if i.startswith(ref)]
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise errors.ValidationError(
            f"message id {ref!r} is ambiguous: it starts {shown}; give more characters",
            field="message_id",
            rule="AmbiguousId",
        )
    return matches[0] if matches else ref


async def replay_dead_letter(
    platform: Platform, registry: ModuleRegistry, module: str, message_id: str
) -> ModuleRecord:
    """Put one dead-lettered message back on its module's subscription; return the module
    it went to. A dead letter a deleted module's delete kept goes to the live module of the
    same name. `message_id` may be a unique prefix (the short event ids trees print).

    Raises:
        errors.ValidationError: no message id, or the module is deleted and no live module
            has its name.
        errors.NotFoundError: no such module, or it has no such dead letter.
    """
    message_id = message_id.strip()
    if not message_id:
        raise errors.ValidationError(
            "field 'message_id' is required", field="message_id", rule="required"
        )
    record = await registry.resolve(module.strip())
    message_id = await _full_message_id(platform, registry, record, message_id)
    if record.deleted:
        live = [m for m in await registry.list_modules() if m.spec.name == record.spec.name]
        if not live:
            raise errors.ValidationError(
                f"module {record.id!r} is deleted and no live module is named"
                f" {record.spec.name!r}; create one (`ion apply -f` or `ion module create`) and"
                " replay again: the dead letter goes to it",
                field="module",
            )
        await retire.replay_parked(platform.bus, record, live[0], message_id)
        return live[0]
    await platform.replay_dead_letter(record.id, message_id)
    return record
