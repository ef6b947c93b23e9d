"""`kill -9` of a dispatcher at every step between receive and settle, then a restart.

Each step is a named fail point (`ion.core.failpoints`): the dispatcher process (`ion-dispatcher
serve`, over embedded backends shared with the test) sends itself SIGKILL when it reaches it. A
fresh dispatcher then takes over. Whatever the step, the flow completes, the module ran once
for its (module, event, attempt), its one child event was published once, and its output is
stored. A randomised loop then kills a dispatcher under load at arbitrary moments.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from ion.core import naming
from ion.core.events import EventMeta, new_root_event
from ion.core.ports.bus import OutgoingMessage
from ion.core.records import AttemptState
from ion.core.testing import eventually
from ion.core.testing.embedded import EmbeddedBackends

pytestmark = pytest.mark.slow

MODULE = """
import json, os, pathlib, sys, time
base = pathlib.Path(os.environ["HANDLER_BASE_DIR"])
meta = json.loads((base / "in/eventmeta.json").read_text())
name = next(p["value"] for p in meta if p["key"] == "name")
with open(os.environ["RUNS_FILE"], "a") as runs:
    runs.write(name + "\\n")
time.sleep(float(os.environ.get("SLEEP", "0")))
(base / "out/data/result.txt").write_text("done " + name)
(base / "out/events/done.json").write_text(json.dumps([
    {"key": "eventType", "value": "thing.done"}, {"key": "files", "value": "result.txt"}]))
"""

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


@pytest.fixture
async def backends(tmp_path: Path) -> AsyncIterator[EmbeddedBackends]:
    found = EmbeddedBackends.open(tmp_path / "ion")
    await found.watch("thing.done")
    yield found
    for backend in (found.bus, found.blobs, found.meta):
        await backend.aclose()


def spec_file(tmp_path: Path, *, sleep: float, max_in_flight: int = 4) -> Path:
    module = tmp_path / "module.py"
    module.write_text(textwrap.dedent(MODULE))
    path = tmp_path / "maker.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "maker",
                "subscribes_to": "thing.new",
                "publishes": ["thing.done"],
                "command": [sys.executable, str(module)],
                "env": {"RUNS_FILE": str(tmp_path / "runs"), "SLEEP": str(sleep)},
                "retry_count": 1,
                "max_in_flight": max_in_flight,
            }
        )
    )
    return path


class Dispatchers:
    """Starts `ion-dispatcher serve` processes over the test's backends."""

    def __init__(self, backends: EmbeddedBackends, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            **backends.env,
            "ION_BUS__LOCK_DURATION_SECONDS": "1.5",
            "ION_BUS__RECEIVE_WAIT_SECONDS": "0.2",
            "ION_DISPATCHER__SHUTDOWN_GRACE_SECONDS": "5",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, spec: Path, *, failpoints: str = "") -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"dispatcher-{len(self.procs)}.log").open("wb")
        env = {**self.env, "ION_FAILPOINTS": failpoints} if failpoints else self.env
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ion-dispatcher"), "serve", "--spec", str(spec)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("dispatcher-*.log")))


@pytest.fixture
def dispatchers(backends: EmbeddedBackends, tmp_path: Path) -> Iterator[Dispatchers]:
    d = Dispatchers(backends, tmp_path)
    yield d
    for proc in d.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def raise_root(backends: EmbeddedBackends, name: str) -> str:
    """Raise a root event as a front API would (eventMeta, then the message); its flow id."""
    event = new_root_event("thing.new", data={"name": name})
    await backends.meta.upsert_event_meta(
        EventMeta(id=event.event_id, context=event.context, type=event.type, data=event.data)
    )
    await backends.bus.ensure_topic("thing.new")
    await backends.bus.publish(
        "thing.new", [OutgoingMessage(body=event.to_json(), message_id=event.event_id)]
    )
    return event.correlation_id


async def wait_subscribed(backends: EmbeddedBackends) -> None:
    sub = naming.subscription_name("thing.new", "maker")

    async def exists() -> bool:
        from ion.core import errors

        try:
            await backends.bus.receive("thing.new", sub, max_messages=0, max_wait=timedelta(0))
        except errors.NotFoundError:
            return False
        return True

    await eventually(exists, timeout=20)


async def succeeded(backends: EmbeddedBackends, flows: list[str], timeout: float) -> None:
    async def done() -> bool:
        for flow in flows:
            states = [a.state for a in await backends.meta.list_attempts(correlation_id=flow)]
            if AttemptState.SUCCEEDED not in states:
                return False
        return True

    await eventually(done, timeout=timeout, interval=0.2)


async def check_effectively_once(
    backends: EmbeddedBackends, flows: list[str], runs: Path, log: str
) -> None:
    names = runs.read_text().split()
    repeated = {n: c for n, c in Counter(names).items() if c > 1}
    assert not repeated, f"modules ran more than once: {repeated}\n{log}"
    children = await backends.published("thing.done")
    per_parent = Counter(m.message_id for m in children)
    assert all(c == 1 for c in per_parent.values())
    assert len(children) == len(flows), f"{len(children)} child events for {len(flows)} flows"
    for flow in flows:
        attempts = await backends.meta.list_attempts(correlation_id=flow)
        assert [(a.attempt, a.state) for a in attempts] == [(1, AttemptState.SUCCEEDED)], attempts
        (output,) = attempts[0].outputs
        chunks = [c async for c in backends.blobs.get_stream(output)]
        assert b"".join(chunks).startswith(b"done "), "an output was lost"


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


async def test_random_kill_9s_under_load_lose_and_repeat_nothing(
    backends: EmbeddedBackends, dispatchers: Dispatchers, tmp_path: Path
) -> None:
    spec = spec_file(tmp_path, sleep=0.05, max_in_flight=4)
    dispatchers.start(spec)
    await wait_subscribed(backends)
    flows = [await raise_root(backends, f"flow-{i}") for i in range(60)]
    rng = random.Random(7)
    for i in range(20):
        log = tmp_path / f"dispatcher-{len(dispatchers.procs) - 1}.log"
        await eventually(lambda log=log: "receiving from" in log.read_text(), timeout=20)
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        victim = dispatchers.procs[-1]
        victim.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.wait)
        dispatchers.start(spec)
        if i == 10:
            flows += [await raise_root(backends, f"late-{j}") for j in range(20)]
    await succeeded(backends, flows, timeout=120)
    await check_effectively_once(backends, flows, tmp_path / "runs", dispatchers.logs())
