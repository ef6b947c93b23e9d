"""Fault tests with real processes: `kill -9`, SIGTERM and competing replicas of a dispatcher.

Dispatchers run as their own processes (`ion-dispatcher serve`) over embedded backends the
test shares; the test raises events and inspects the bus, blob store and metadata store
directly. Modules that must outlive a moment wait for a release file instead of sleeping, so
no test races a timer on a loaded machine.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from ion.core.records import AttemptState
from ion.core.testing import eventually
from ion.core.testing.embedded import EmbeddedBackends
from tests.procs import (
    SUBSCRIPTION,
    Dispatchers,
    check_effectively_once,
    raise_root,
    spec_file,
    succeeded,
    wait_subscribed,
)

pytestmark = pytest.mark.slow


def runs_of(tmp_path: Path) -> list[str]:
    path = tmp_path / "runs"
    return path.read_text().split() if path.exists() else []


async def test_kill_9_while_the_module_runs_and_a_restart_after_it_ended_commits_it_once(
    backends: EmbeddedBackends, dispatchers: Dispatchers, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    spec = spec_file(tmp_path, release=release)
    first = dispatchers.start(spec)
    await wait_subscribed(backends)
    flow = await raise_root(backends, "one")
    await eventually(lambda: runs_of(tmp_path) == ["one"], timeout=20)
    first.send_signal(signal.SIGKILL)
    await asyncio.to_thread(first.wait)
    release.touch()  # the module ends while no dispatcher runs
    jobs = Path(dispatchers.env["ION_HOME"]) / "jobs"
    await eventually(lambda: any(jobs.glob("*/run-*.exit")), timeout=20)
    dispatchers.start(spec)
    await succeeded(backends, [flow], timeout=30)
    await check_effectively_once(backends, [flow], tmp_path / "runs", dispatchers.logs())
    assert "adopting job" in dispatchers.logs()


async def test_sigterm_stops_receiving_finishes_in_flight_and_leaves_the_rest(
    backends: EmbeddedBackends, dispatchers: Dispatchers, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    spec = spec_file(tmp_path, release=release, max_in_flight=2)
    proc = dispatchers.start(spec)
    await wait_subscribed(backends)
    flows = [await raise_root(backends, f"e{i}") for i in range(5)]
    await eventually(lambda: len(runs_of(tmp_path)) == 2, timeout=20)
    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)  # it is stopping; nothing new may start meanwhile
    release.touch()
    code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0, dispatchers.logs()
    started = runs_of(tmp_path)
    assert len(started) == 2, f"a job was started after SIGTERM: {started}"
    states = [a.state for f in flows for a in await backends.meta.list_attempts(correlation_id=f)]
    assert states == [AttemptState.SUCCEEDED] * 2, "in-flight jobs did not finish in the grace"
    # The rest are on the bus for others at once: not locked by the dispatcher that left.
    rest = await backends.bus.receive(
        "thing.new", SUBSCRIPTION, max_messages=10, max_wait=timedelta(seconds=0.5)
    )
    assert len(rest) == 3, "unstarted messages were left locked by a dispatcher that is gone"
    assert all(m.delivery_count == 1 for m in rest)
    assert "Traceback" not in dispatchers.logs()


async def test_replicas_in_separate_processes_compete_and_each_event_runs_once(
    backends: EmbeddedBackends, dispatchers: Dispatchers, tmp_path: Path
) -> None:
    spec = spec_file(tmp_path, sleep=0.2, max_in_flight=2)
    replicas = [dispatchers.start(spec), dispatchers.start(spec)]
    await wait_subscribed(backends)
    for i in range(len(replicas)):
        await dispatchers.receiving(i)
    flows = [await raise_root(backends, f"e{i}") for i in range(16)]
    await succeeded(backends, flows, timeout=60)
    await check_effectively_once(backends, flows, tmp_path / "runs", dispatchers.logs())
    by_dispatcher: Counter[str] = Counter()
    for f in flows:
        by_dispatcher.update(
            a.dispatcher for a in await backends.meta.list_attempts(correlation_id=f)
        )
    assert len(by_dispatcher) == 2, f"one replica did all the work: {by_dispatcher}"
