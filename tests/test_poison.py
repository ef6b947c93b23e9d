"""Every poison message is dead-lettered on its first delivery, with its reason, among good flows.

A real dispatcher (the control plane's local pool over the embedded backends) serves a module
whose subscription would allow six deliveries. The generated corpus of bad bodies
(`ion.core.testing.poison`: not JSON, not UTF-8, lone surrogates, NUL, nesting, long numbers,
oversized bodies, wrong types, over-long and `../` ids...) is published straight to the bus,
interleaved with good root events. Each bad message must reach the dead-letter queue on its
FIRST delivery (delivery count 1, the reason `Event.from_json` names, never
MaxDeliveryCountExceeded after looping), no bad message may start a job, and every good
event's flow must complete.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from ion.core import naming
from ion.core.config import IonSettings, load_settings
from ion.core.events import Event
from ion.core.modules import ModuleSpec
from ion.core.ports.bus import MAX_DELIVERY_COUNT_EXCEEDED, OutgoingMessage
from ion.core.records import ModuleRecord
from ion.core.testing.poison import bad_bodies
from ion.management.control import ControlPlane

TOPIC = "poison.test"
MODULE = "poison-sink"
GOOD_EVERY = 25
"""One good root event after every this many bad messages."""


def _settings(tmp_path: Path) -> IonSettings:
    return load_settings(
        environ={
            "ION_HOME": str(tmp_path / "home"),
            "ION_BUS__LOCK_DURATION_SECONDS": "2",
            "ION_BUS__RECEIVE_WAIT_SECONDS": "0.1",
            "ION_DISPATCHER__SHUTDOWN_GRACE_SECONDS": "5",
        }
    )


async def test_every_poison_message_is_dead_lettered_on_first_delivery_and_good_flows_complete(
    tmp_path: Path,
) -> None:
    true = shutil.which("true") or "/bin/true"
    spec = ModuleSpec(
        name=MODULE,
        subscribes_to=TOPIC,
        command=[true],
        retry_count=5,  # a message that looped would be redelivered up to 6 times
        max_in_flight=8,
    )
    corpus = bad_bodies(TOPIC)
    assert len(corpus) >= 500
    expected = {f"bad-{i:04d}": bad for i, bad in enumerate(corpus)}
    subscription = naming.subscription_name(TOPIC, MODULE)

    async with ControlPlane(_settings(tmp_path), working_dir=tmp_path) as platform:
        await platform.start_module(
            ModuleRecord(id=MODULE, spec=spec, created_at=datetime.now(UTC))
        )
        good: list[Event] = []
        ids = list(expected)
        for start in range(0, len(ids), GOOD_EVERY):
            batch = ids[start : start + GOOD_EVERY]
            await platform.bus.publish(
                TOPIC, [OutgoingMessage(body=expected[i].body, message_id=i) for i in batch]
            )
            good.append(await platform.raise_event(TOPIC, data={"n": str(len(good))}))

        deadline = asyncio.get_running_loop().time() + 40
        while (await platform.bus.counts(TOPIC, subscription)).dead_lettered < len(expected):
            assert asyncio.get_running_loop().time() < deadline, "poison messages still queued"
            await asyncio.sleep(0.05)
        flows = await asyncio.gather(
            *(platform.wait_settled(e.correlation_id, timeout=30) for e in good)
        )
        dead = await platform.bus.peek(
            TOPIC, subscription, max_messages=len(expected) + 10, dead_letter=True
        )
        attempts = await platform.meta.list_attempts(module=MODULE)

    wrong: list[str] = []
    seen = {m.message_id: m for m in dead}
    for message_id, bad in expected.items():
        message = seen.get(message_id)
        if message is None:
            wrong.append(f"{bad.label}: not dead-lettered")
        elif message.dead_letter_reason != bad.reason or message.delivery_count != 1:
            wrong.append(
                f"{bad.label}: {message.dead_letter_reason!r} on delivery"
                f" {message.delivery_count} ({message.dead_letter_description[:120]})"
            )
        elif not message.dead_letter_description:
            wrong.append(f"{bad.label}: no description")
    assert not wrong, f"{len(wrong)} of {len(expected)}:\n" + "\n".join(wrong)
    reasons = Counter(m.dead_letter_reason for m in dead)
    assert MAX_DELIVERY_COUNT_EXCEEDED not in reasons, reasons
    assert set(seen) == set(expected), "a good event was dead-lettered"

    for event, flow in zip(good, flows, strict=True):
        assert flow.succeeded, (event.correlation_id, flow.model_dump(mode="json"))
        [run] = flow.runs()
        assert (run.module, len(run.attempts)) == (MODULE, 1)
    # No bad message started a job: every attempt recorded is one of a good event.
    assert sorted(a.event_id for a in attempts) == sorted(e.event_id for e in good)
