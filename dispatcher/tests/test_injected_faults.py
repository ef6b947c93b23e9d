"""A running dispatcher loses a message lock, and its backends fail under it; it keeps going.

The bus and metadata store are the embedded ones, wrapped to fail on cue. Modules that must
outlive a lock wait for a release file the test creates, so nothing races a timer.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dispatcher.tests.harness import Harness, harness
from ion.core import errors
from ion.core.backends import open_bus, open_meta
from ion.core.config import IonSettings
from ion.core.modules import ModuleSpec
from ion.core.ports.bus import SubscriptionOptions
from ion.core.records import AttemptState, ModuleRecord
from ion.core.testing import eventually

ScriptMaker = Any


class Faulty:
    """Delegates to a backend; methods named in `failures` raise the next error queued there."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.failures: dict[str, list[Exception]] = {}
        self.calls: dict[str, int] = {}

    def fail(self, method: str, *errs: Exception) -> None:
        self.failures.setdefault(method, []).extend(errs)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            queued = self.failures.get(name)
            if queued:
                raise queued.pop(0)
            return await target(*args, **kwargs)

        return call


WRITE_EVENT = """
(BASE / "out/data/result.txt").write_text("done")
(BASE / "out/events/done.json").write_text(json.dumps([
    {"key": "eventType", "value": "thing.done"}, {"key": "files", "value": "result.txt"}]))
"""


@pytest.fixture
async def faulty(
    settings: IonSettings, tmp_path: Path
) -> AsyncIterator[tuple[Harness, Faulty, Faulty]]:
    bus, meta = Faulty(open_bus(settings.bus_url)), Faulty(open_meta(settings.meta_url))
    async with harness(settings, tmp_path, bus=bus, meta=meta) as p:
        await p.bus.ensure_subscription("thing.done", "watcher", SubscriptionOptions())
        yield p, bus, meta


def maker(script: ScriptMaker, body: str) -> ModuleRecord:
    spec = ModuleSpec(
        name="maker",
        subscribes_to="thing.new",
        publishes=["thing.done"],
        command=script("maker", body),
        max_in_flight=2,
    )
    return ModuleRecord(id="maker", spec=spec, created_at=datetime.now(UTC))


async def test_a_lost_lock_is_logged_the_job_goes_on_and_the_redelivery_adopts_it(
    faulty: tuple[Harness, Faulty, Faulty], script: ScriptMaker, tmp_path: Path
) -> None:
    platform, bus, _ = faulty
    runs, release = tmp_path / "runs", tmp_path / "release"
    bus.fail("renew_lock", *(errors.LockLostError("lock lost (injected)") for _ in range(50)))
    await platform.start_module(
        maker(
            script,
            f"open({str(runs)!r}, 'a').write('x')\n"
            f"while not os.path.exists({str(release)!r}): time.sleep(0.02)\n" + WRITE_EVENT,
        )
    )
    root = await platform.raise_event("thing.new")
    running = platform.dispatchers("maker")[0]

    async def adopted() -> bool:
        return running.stats.adopted >= 1

    # The lock (2 s) lapses without renewal; the message comes back and finds the job running.
    await eventually(adopted, timeout=20)
    release.touch()
    flow = await platform.wait_settled(root.correlation_id, timeout=20)
    assert flow.succeeded
    assert runs.read_text() == "x", "the module ran again after the lock was lost"
    children = await platform.bus.peek("thing.done", "watcher", max_messages=10)
    assert len(children) == 1
    attempts = await platform.meta.list_attempts(correlation_id=root.correlation_id)
    assert [(a.attempt, a.state) for a in attempts] == [(1, AttemptState.SUCCEEDED)]


async def test_backend_errors_on_receive_settle_and_records_are_retried_and_flows_complete(
    faulty: tuple[Harness, Faulty, Faulty], script: ScriptMaker
) -> None:
    platform, bus, meta = faulty
    transient = (
        errors.TransientError("database or disk is full (injected)") for _ in itertools.count()
    )
    bus.fail("receive", *itertools.islice(transient, 3))
    bus.fail("complete", next(transient))
    meta.fail("upsert_attempt", next(transient))
    await platform.start_module(maker(script, WRITE_EVENT))
    roots = [await platform.raise_event("thing.new") for _ in range(4)]
    for root in roots:
        flow = await platform.wait_settled(root.correlation_id, timeout=60)
        assert flow.succeeded, flow
    assert bus.calls["receive"] > 3 and not bus.failures["receive"]
    assert not bus.failures["complete"] and not meta.failures["upsert_attempt"]
    assert platform.module_status("maker").dispatchers_running == 1
    children = await platform.bus.peek("thing.done", "watcher", max_messages=10)
    assert len(children) == 4


async def test_an_unexpected_error_on_receive_does_not_stop_the_dispatcher(
    faulty: tuple[Harness, Faulty, Faulty], script: ScriptMaker
) -> None:
    platform, bus, _ = faulty
    bus.fail("receive", RuntimeError("a bug in a backend (injected)"))
    await platform.start_module(maker(script, WRITE_EVENT))
    root = await platform.raise_event("thing.new")
    assert (await platform.wait_settled(root.correlation_id, timeout=30)).succeeded
    assert platform.module_status("maker").dispatchers_running == 1
