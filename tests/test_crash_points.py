"""`kill -9` of a dispatcher at every step between receive and settle, then a restart.

Each step is a named fail point (`ion.core.failpoints`): the dispatcher process (`ion-dispatcher
serve`, over embedded backends shared with the test) sends itself SIGKILL when it reaches it. A
fresh dispatcher then takes over. Whatever the step, the flow completes, the module ran once
for its (module, event, attempt), its one child event was published once, and its output is
stored. A randomised loop then kills a dispatcher under load at arbitrary moments.
"""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import pytest

from ion.core.testing.embedded import EmbeddedBackends
from tests.procs import (
    Dispatchers,
    check_effectively_once,
    raise_root,
    spec_file,
    succeeded,
    wait_subscribed,
)

pytestmark = pytest.mark.slow

POINTS = [
    "dispatcher.received",
    "dispatcher.submitted",
    "local.prepared",
    "local.module-recorded",
    "local.spawned",
    "local.module-ended",
    "commit.before-publish",
    "commit.published",
    "local.finished",
    "dispatcher.job-finished",
    "dispatcher.recorded",
    "dispatcher.completed",
]


@pytest.mark.parametrize("point", POINTS)
async def test_kill_9_at_each_step_then_restart_completes_once(
    backends: EmbeddedBackends, dispatchers: Dispatchers, tmp_path: Path, point: str
) -> None:
    spec = spec_file(tmp_path, sleep=0.3)
    first = dispatchers.start(spec, failpoints=point)
    await wait_subscribed(backends)
    flow = await raise_root(backends, "only")
    code = await asyncio.to_thread(first.wait, 30)
    assert code == -signal.SIGKILL, f"the dispatcher did not reach {point}\n{dispatchers.logs()}"
    dispatchers.start(spec)
    await succeeded(backends, [flow], timeout=40)
    await check_effectively_once(backends, [flow], tmp_path / "runs", dispatchers.logs())


@pytest.mark.timeout(300)
async def test_random_kill_9s_under_load_lose_and_repeat_nothing(
    backends: EmbeddedBackends, dispatchers: Dispatchers, tmp_path: Path
) -> None:
    spec = spec_file(tmp_path, sleep=0.05, max_in_flight=4)
    dispatchers.start(spec)
    await wait_subscribed(backends)
    flows = [await raise_root(backends, f"flow-{i}") for i in range(60)]
    rng = random.Random(7)
    for i in range(20):
        await dispatchers.receiving()
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        victim = dispatchers.procs[-1]
        victim.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.wait)
        dispatchers.start(spec)
        if i == 10:
            flows += [await raise_root(backends, f"late-{j}") for j in range(20)]
    await succeeded(backends, flows, timeout=150, log=dispatchers.logs())
    await check_effectively_once(backends, flows, tmp_path / "runs", dispatchers.logs())
