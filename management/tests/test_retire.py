"""Retiring a subscription keeps every message (queued, scheduled, locked, dead-lettered) as a
dead letter of the deleted module and settles the module's open runs as CANCELLED."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from ion.core import naming
from ion.core.backends import open_bus, open_meta
from ion.core.events import new_root_event
from ion.core.modules import ModuleSpec
from ion.core.ports.bus import OutgoingMessage, SubscriptionOptions
from ion.core.records import AttemptState, JobAttempt, ModuleRecord
from ion.management import retire


async def test_every_message_is_kept_and_every_open_run_cancelled(tmp_path: Path) -> None:
    bus = open_bus(f"sqlite:///{tmp_path / 'bus.db'}")
    meta = open_meta(f"sqlite:///{tmp_path / 'meta.db'}")
    spec = ModuleSpec.parse({"name": "q", "subscribes_to": "job.start", "command": ["x"]})
    created = datetime.now(UTC) - timedelta(minutes=1)
    record = ModuleRecord(id="q-abcde", spec=spec, created_at=created)
    topic, subscription = retire.module_location(record)
    await bus.ensure_subscription(topic, subscription, SubscriptionOptions())
    events = [new_root_event("job.start", data={}) for _ in range(5)]
    now = datetime.now(UTC)

    def message(i: int) -> OutgoingMessage:
        return OutgoingMessage(body=events[i].to_json(), message_id=events[i].event_id)

    # 0: queued, never started; 1: running (locked, attempt RUNNING); 2: failed, retry scheduled;
    # 3: dead-lettered earlier; 4: succeeded (its message completed).
    await bus.publish(topic, [message(0), message(1), message(3)])
    retry = OutgoingMessage(
        body=events[2].to_json(),
        message_id=f"{events[2].event_id}.q.attempt-2",
        properties={"ion-attempt": "2"},
        scheduled_at=now + timedelta(hours=1),
    )
    await bus.publish(topic, [retry])
    got = await bus.receive(topic, subscription, max_messages=3, max_wait=timedelta(seconds=1))
    by_id = {m.message_id: m for m in got}
    await bus.dead_letter(by_id[events[3].event_id], reason="ModuleFailed", description="exit 3")

    def attempt(i: int, n: int, state: AttemptState) -> JobAttempt:
        return JobAttempt(
            id=naming.job_id("q", events[i].event_id, n),
            module="q",
            event_id=events[i].event_id,
            correlation_id=events[i].correlation_id,
            attempt=n,
            state=state,
            started_at=now,
        )

    await meta.upsert_attempt(attempt(1, 1, AttemptState.RUNNING))
    await meta.upsert_attempt(attempt(2, 1, AttemptState.FAILED))
    await meta.upsert_attempt(attempt(3, 1, AttemptState.DEAD_LETTERED))
    await meta.upsert_attempt(attempt(4, 1, AttemptState.SUCCEEDED))

    done = await retire.retire(bus, meta, record, why="module q-abcde was deleted with --force")

    assert done == retire.Retired(dead_lettered=4, cancelled=3)
    kept = await retire.parked_dead_letters(bus, record, max_messages=10)
    reasons = {m.properties[retire.PARKED_FROM]: m.dead_letter_reason for m in kept}
    assert reasons == {
        events[0].event_id: "ModuleDeleted",
        events[1].event_id: "ModuleDeleted",
        retry.message_id: "ModuleDeleted",
        events[3].event_id: "ModuleFailed",
    }
    assert "--force" in next(
        m.dead_letter_description for m in kept if m.dead_letter_reason == "ModuleDeleted"
    )
    last = {}
    for a in await meta.list_attempts(module="q"):
        if a.event_id not in last or a.attempt > last[a.event_id].attempt:
            last[a.event_id] = a
    assert [last[e.event_id].state for e in events] == [
        AttemptState.CANCELLED,  # queued: never ran
        AttemptState.CANCELLED,  # running
        AttemptState.CANCELLED,  # its retry never comes (attempt 2)
        AttemptState.DEAD_LETTERED,
        AttemptState.SUCCEEDED,
    ]
    assert last[events[2].event_id].attempt == 2
    assert "deleted with --force" in last[events[1].event_id].reason
    assert (await bus.counts(topic, subscription)).active == 0

    # A replay goes to a live module of the same name and leaves the others kept.
    live = ModuleRecord(id="q-fghij", spec=spec, created_at=datetime.now(UTC))
    await bus.ensure_subscription(topic, subscription, SubscriptionOptions())
    await retire.replay_parked(bus, record, live, events[0].event_id)
    resent = await bus.receive(topic, subscription, max_messages=5, max_wait=timedelta(seconds=1))
    assert [m.body for m in resent] == [events[0].to_json()]
    assert resent[0].properties["ion-attempt"] == "2"
    assert len(await retire.parked_dead_letters(bus, record, max_messages=10)) == 3
    await bus.aclose()
    await meta.aclose()
