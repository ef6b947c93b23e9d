"""A cancelled flow (`ion flow cancel`, recorded in the store): its running job is killed, its
queued events never run, each becomes a CANCELLED attempt and its message is completed."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from dispatcher.tests.conftest import ScriptMaker
from dispatcher.tests.harness import Harness
from ion.core import naming
from ion.core.flowindex import FlowStatus
from ion.core.modules import ModuleSpec
from ion.core.records import AttemptState, JobAttempt, ModuleRecord, RunStatus
from ion.core.testing import eventually

SLOW = """
runs = pathlib.Path(os.environ["RUNS_DIR"])
runs.mkdir(exist_ok=True)
(runs / str(os.getpid())).touch()
time.sleep(60)
"""


async def _attempts(platform: Harness, correlation_id: str) -> list[JobAttempt]:
    return await platform.meta.list_attempts(correlation_id=correlation_id)


async def test_cancelling_flows_kills_the_running_job_and_runs_nothing_queued(
    platform: Harness, script: ScriptMaker, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    spec = ModuleSpec(
        name="slow",
        subscribes_to="thing.new",
        command=script("slow", SLOW),
        env={"RUNS_DIR": str(runs)},
        max_in_flight=1,
        retry_count=2,
    )
    module = ModuleRecord(id="slow", spec=spec, created_at=datetime.now(UTC))
    await platform.meta.create_module(module)  # as the registry does: the store knows it
    await platform.start_module(module)
    first = await platform.raise_event("thing.new")
    await eventually(lambda: runs.is_dir() and len(os.listdir(runs)) == 1, timeout=30)
    pid = int(os.listdir(runs)[0])
    queued = await platform.raise_event("thing.new")  # waits: one job at a time

    summary = await platform.meta.cancel_flow(queued.correlation_id)
    assert summary.status == FlowStatus.CANCELLED and summary.runs == {RunStatus.CANCELLED: 1}
    await platform.meta.cancel_flow(first.correlation_id)

    async def both_cancelled() -> bool:
        found = [await _attempts(platform, f.correlation_id) for f in (first, queued)]
        return all(a and a[-1].state == AttemptState.CANCELLED for a in found)

    await eventually(both_cancelled, timeout=30)
    [killed] = await _attempts(platform, first.correlation_id)
    assert killed.reason == "the flow was cancelled while it ran"
    [never] = await _attempts(platform, queued.correlation_id)
    assert never.reason == "the flow was cancelled before it started"
    # the running module was killed, the queued event never ran, and no retry follows
    await eventually(lambda: not Path(f"/proc/{pid}").exists(), timeout=10)
    assert os.listdir(runs) == [str(pid)]
    counts = await platform.bus.counts("thing.new", naming.subscription_name("thing.new", "slow"))
    assert (counts.active, counts.scheduled, counts.dead_lettered) == (0, 0, 0)
    flow = await platform.wait_settled(first.correlation_id, timeout=5)
    assert (flow.status, [r.status for r in flow.runs()]) == (
        FlowStatus.CANCELLED,
        [RunStatus.CANCELLED],
    )
