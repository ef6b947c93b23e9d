"""Delivery semantics of one dispatcher, with real module processes and the embedded backends.

Each test is one sentence of the README's delivery guarantees.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dispatcher.tests.harness import Harness
from ion.core import errors, naming
from ion.core.backends import open_blobs, open_bus, open_meta
from ion.core.clock import ManualClock
from ion.core.config import IonSettings
from ion.core.events import Event
from ion.core.modules import ModuleSpec
from ion.core.ports.bus import OutgoingMessage, SubscriptionOptions
from ion.core.records import AttemptState, ModuleRecord
from ion.core.testing import eventually
from ion.dispatcher.embedded import dispatcher_options
from ion.dispatcher.executors.local import LocalExecutor
from ion.dispatcher.pool import DispatcherPool

ScriptMaker = Callable[[str, str], list[str]]


def record(spec: ModuleSpec) -> ModuleRecord:
    """A module record for a spec (id = name)."""
    return ModuleRecord(id=spec.name, spec=spec, created_at=datetime.now(UTC))


def pid_alive(pid: int) -> bool:
    """True if a process with that pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


WRITE_EVENT = """
(BASE / "out/data/result.txt").write_text("done")
(BASE / "out/events/done.json").write_text(json.dumps([
    {"key": "eventType", "value": "thing.done"}, {"key": "files", "value": "result.txt"}]))
"""


async def _raise(platform: Harness, event_type: str = "thing.new") -> Event:
    return await platform.raise_event(event_type, data={"k": "v"})


async def test_a_successful_job_commits_and_completes(
    platform: Harness, script: ScriptMaker
) -> None:
    spec = ModuleSpec(
        name="maker",
        subscribes_to="thing.new",
        publishes=["thing.done"],
        command=script("ok", WRITE_EVENT),
    )
    await platform.start_module(record(spec))
    root = await _raise(platform)
    flow = await platform.wait_settled(root.correlation_id, timeout=20)
    assert flow.succeeded
    [run] = flow.runs()
    assert (run.module, run.status, len(run.attempts)) == ("maker", "SUCCEEDED", 1)
    [child] = run.children
    assert child.event_type == "thing.done" and child.files == ["result.txt"]
    assert [o.rsplit("/", 1)[-1] for o in run.outputs] == ["result.txt"]
    counts = await platform.bus.counts("thing.new", naming.subscription_name("thing.new", "maker"))
    assert (counts.active, counts.dead_lettered) == (0, 0)
    docs = await platform.meta.list_documents(root.correlation_id)
    kinds = sorted(d.context.document_type for d in docs)
    assert kinds == ["eventMeta", "eventMeta", "modulelogs"]


async def test_poison_messages_are_dead_lettered_at_once_and_the_dispatcher_keeps_running(
    platform: Harness, script: ScriptMaker
) -> None:
    spec = ModuleSpec(
        name="maker",
        subscribes_to="thing.new",
        publishes=["thing.done"],
        command=script("ok", WRITE_EVENT),
    )
    await platform.start_module(record(spec))
    poison = [
        OutgoingMessage(body=b"not json at all", message_id="p1"),
        OutgoingMessage(body=b'{"type": "thing.new"}', message_id="p2"),
        OutgoingMessage(
            body=b'{"context": {"eventId": "e", "correlationId": "c"}, "type": "other.type"}',
            message_id="p3",
        ),
    ]
    await platform.bus.publish("thing.new", poison)
    sub = naming.subscription_name("thing.new", "maker")

    async def all_dead() -> bool:
        return len(await platform.bus.peek("thing.new", sub, dead_letter=True)) == 3

    await eventually(all_dead, timeout=10)
    reasons = {
        m.message_id: m.dead_letter_reason
        for m in await platform.bus.peek("thing.new", sub, dead_letter=True)
    }
    assert reasons == {"p1": "NotJson", "p2": "MissingContext", "p3": "WrongEventType"}
    root = await _raise(platform)
    assert (await platform.wait_settled(root.correlation_id, timeout=20)).succeeded
    assert platform.module_status("maker").dispatchers_running == 1


async def test_a_failing_module_is_retried_with_backoff_then_dead_lettered_with_reason_and_logs(
    platform: Harness, script: ScriptMaker
) -> None:
    argv = script("fails", "print('about to fail', flush=True)\nsys.exit(3)\n")
    spec = ModuleSpec(
        name="flaky",
        subscribes_to="thing.new",
        command=argv,
        retry_count=2,
        retry_backoff_seconds=0.4,
    )
    await platform.start_module(record(spec))
    root = await _raise(platform)
    flow = await platform.wait_settled(root.correlation_id, timeout=30)
    assert flow.settled and not flow.succeeded
    [run] = flow.runs()
    assert run.status == "DEAD_LETTERED"
    assert [a.attempt for a in run.attempts] == [1, 2, 3]
    assert [a.state for a in run.attempts] == [
        AttemptState.FAILED,
        AttemptState.FAILED,
        AttemptState.DEAD_LETTERED,
    ]
    assert all(a.exit_code == 3 for a in run.attempts)
    gaps = [
        (b.started_at - a.finished_at).total_seconds()  # type: ignore[operator]  # both set on finished attempts
        for a, b in zip(run.attempts, run.attempts[1:], strict=False)
    ]
    assert gaps[0] >= 0.4 * 0.9 and gaps[1] >= 0.8 * 0.9, gaps  # backoff doubles
    [dead] = await platform.dead_letters("flaky")
    assert dead.dead_letter_reason == "ModuleFailed"
    assert "exited with code 3" in dead.dead_letter_description
    assert run.attempts[-1].logs_ref in dead.dead_letter_description
    log_path = Path(platform.blobs.root) / run.attempts[-1].logs_ref  # type: ignore[attr-defined]  # filesystem store
    assert "about to fail" in log_path.read_text()
    assert len(run.logs) == 3


async def test_a_module_that_succeeds_on_retry_completes_the_flow(
    platform: Harness, script: ScriptMaker, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    argv = script(
        "second_time",
        f"""
c = pathlib.Path({str(counter)!r}); n = int(c.read_text()) if c.exists() else 0
c.write_text(str(n + 1))
sys.exit(1 if n == 0 else 0)
""",
    )
    spec = ModuleSpec(
        name="second",
        subscribes_to="thing.new",
        command=argv,
        retry_count=1,
        retry_backoff_seconds=0.1,
    )
    await platform.start_module(record(spec))
    root = await _raise(platform)
    flow = await platform.wait_settled(root.correlation_id, timeout=20)
    assert flow.succeeded
    assert [a.state for a in flow.runs()[0].attempts] == [
        AttemptState.FAILED,
        AttemptState.SUCCEEDED,
    ]


async def test_a_module_that_hangs_is_killed_at_its_deadline_with_its_children(
    settings: IonSettings, script: ScriptMaker, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    argv = script(
        "hangs",
        f"""
import subprocess
child = subprocess.Popen(["sleep", "300"])
pathlib.Path({str(pids)!r}).write_text(f"{{os.getpid()}} {{child.pid}}")
time.sleep(300)
""",
    )
    spec = ModuleSpec(
        name="hangs",
        subscribes_to="thing.new",
        command=argv,
        retry_count=0,
        max_execution_seconds=1.0,
    )
    # The executor's time is the test's: the deadline passes once the module has started its
    # child, however slowly a loaded machine starts them.
    clock = ManualClock(datetime.now(UTC))
    bus, blobs, meta = (
        open_bus(settings.bus_url),
        open_blobs(settings.blobs_url),
        open_meta(settings.meta_url),
    )
    executor = LocalExecutor(settings.jobs_dir, bus=bus, blobs=blobs, meta=meta, clock=clock)
    options = dispatcher_options(settings, working_dir=tmp_path)
    try:
        async with DispatcherPool(bus=bus, meta=meta, executor=executor, options=options) as pool:
            platform = Harness(pool, bus=bus, blobs=blobs, meta=meta)
            await platform.start_module(record(spec))
            root = await _raise(platform)
            await eventually(pids.exists, timeout=30)
            await clock.advance(timedelta(seconds=1.5))
            flow = await platform.wait_settled(root.correlation_id, timeout=30)
    finally:
        for backend in (bus, blobs, meta):
            await backend.aclose()
    [run] = flow.runs()
    assert run.status == "DEAD_LETTERED"
    assert "max execution time of 1s" in run.reason
    for pid in map(int, pids.read_text().split()):
        await eventually(lambda pid=pid: not pid_alive(pid), timeout=5)


async def test_in_flight_jobs_are_bounded(
    platform: Harness, script: ScriptMaker, tmp_path: Path
) -> None:
    running, seen = tmp_path / "running", tmp_path / "seen"
    running.mkdir()
    seen.mkdir()
    # Each job notes how many jobs run with it, then waits (a while) for a partner, so two run
    # together whenever the dispatcher allows two, and more would be seen if it allowed more.
    argv = script(
        "slow",
        f"""
me = pathlib.Path({str(running)!r}) / str(os.getpid()); me.touch()
(pathlib.Path({str(seen)!r}) / str(os.getpid())).write_text(str(len(os.listdir(me.parent))))
end = time.time() + 3
while len(os.listdir(me.parent)) < 2 and time.time() < end:
    time.sleep(0.01)
time.sleep(0.2)
me.unlink()
""",
    )
    spec = ModuleSpec(name="slow", subscribes_to="thing.new", command=argv, max_in_flight=2)
    await platform.start_module(record(spec))
    roots = [await _raise(platform) for _ in range(6)]
    for root in roots:
        assert (await platform.wait_settled(root.correlation_id, timeout=60)).succeeded
    counts = [int(p.read_text()) for p in seen.iterdir()]
    assert len(counts) == 6
    assert max(counts) == 2, counts


async def test_a_redelivered_message_of_a_finished_attempt_is_only_completed(
    platform: Harness, script: ScriptMaker, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    argv = script("counts", f"open({str(runs)!r}, 'a').write('x')\n" + WRITE_EVENT)
    spec = ModuleSpec(
        name="maker", subscribes_to="thing.new", publishes=["thing.done"], command=argv
    )
    await platform.bus.ensure_subscription(
        "thing.done", "thing.done_watcher", SubscriptionOptions()
    )
    await platform.start_module(record(spec))
    root = await _raise(platform)
    assert (await platform.wait_settled(root.correlation_id, timeout=20)).succeeded
    # The same event again (as after a lost lock): a different message id, same event id.
    await platform.bus.publish(
        "thing.new", [OutgoingMessage(body=root.to_json(), message_id=f"{root.event_id}-again")]
    )
    sub = naming.subscription_name("thing.new", "maker")

    async def drained() -> bool:
        c = await platform.bus.counts("thing.new", sub)
        return c.active == 0 and platform.module_status("maker").jobs_in_flight == 0

    await eventually(drained, timeout=10)
    assert runs.read_text() == "x"
    children = await platform.bus.receive(
        "thing.done", "thing.done_watcher", max_messages=10, max_wait=timedelta(seconds=1)
    )
    assert len(children) == 1


async def test_stopping_a_module_leaves_no_dispatcher_running(
    platform: Harness, script: ScriptMaker
) -> None:
    spec = ModuleSpec(name="maker", subscribes_to="thing.new", command=script("noop", "pass\n"))
    await platform.start_module(record(spec))
    assert platform.module_status("maker").dispatchers_running == 1
    await asyncio.wait_for(platform.stop_module("maker"), timeout=10)
    assert platform.module_status("maker").dispatchers_running == 0


async def test_a_subscription_deleted_under_a_running_dispatcher_is_recreated(
    platform: Harness, script: ScriptMaker
) -> None:
    spec = ModuleSpec(
        name="maker",
        subscribes_to="thing.new",
        publishes=["thing.done"],
        command=script("ok", WRITE_EVENT),
    )
    await platform.start_module(record(spec))
    first = await _raise(platform)
    assert (await platform.wait_settled(first.correlation_id, timeout=20)).succeeded
    sub = naming.subscription_name("thing.new", "maker")
    await platform.bus.delete_subscription("thing.new", sub)

    async def recreated() -> bool:
        try:
            await platform.bus.receive("thing.new", sub, max_messages=0, max_wait=timedelta(0))
        except errors.NotFoundError:
            return False
        return True

    await eventually(recreated, timeout=10)
    root = await _raise(platform)
    assert (await platform.wait_settled(root.correlation_id, timeout=20)).succeeded
    assert platform.module_status("maker").dispatchers_running == 1
