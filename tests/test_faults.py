"""Fault tests with real processes: kill -9 and SIGTERM a dispatcher (`ion-dispatcher serve`).

The dispatcher runs as its own process over the embedded backends in a temporary Ion home; the
test raises events and inspects the bus, blob store and metadata store directly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from ion.core import errors, naming
from ion.core.config import IonSettings, load_settings
from ion.core.flow import load_flow
from ion.core.ports.bus import SubscriptionOptions
from ion.core.records import AttemptState
from ion.core.testing import eventually
from ion.dispatcher.platform import EmbeddedPlatform

pytestmark = pytest.mark.slow

MODULE = """
import json, os, pathlib, sys, time
base = pathlib.Path(os.environ["HANDLER_BASE_DIR"])
with open(os.environ["RUNS_FILE"], "a") as runs:
    runs.write("x")
time.sleep(float(os.environ.get("SLEEP", "0")))
(base / "out/data/result.txt").write_text("done")
(base / "out/events/done.json").write_text(json.dumps([
    {"key": "eventType", "value": "thing.done"}, {"key": "files", "value": "result.txt"}]))
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ION_HOME": str(tmp_path / "home"),
        "ION_BUS__LOCK_DURATION_SECONDS": "1.5",
        "ION_BUS__RECEIVE_WAIT_SECONDS": "0.2",
        "ION_DISPATCHER__SHUTDOWN_GRACE_SECONDS": "10",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> IonSettings:
    return load_settings(environ=env)


@pytest.fixture
async def platform(settings: IonSettings) -> AsyncIterator[EmbeddedPlatform]:
    async with EmbeddedPlatform(settings) as p:
        await p.bus.ensure_subscription("thing.done", "thing.done_watcher", SubscriptionOptions())
        yield p


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
    """Starts `ion-dispatcher serve` processes and kills them at the end."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env, self.tmp_path, self.procs = env, tmp_path, list[subprocess.Popen[bytes]]()

    def start(self, spec: Path) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"dispatcher-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ion-dispatcher"), "serve", "--spec", str(spec)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("dispatcher-*.log")))


@pytest.fixture
def dispatchers(env: dict[str, str], tmp_path: Path) -> Iterator[Dispatchers]:
    d = Dispatchers(env, tmp_path)
    yield d
    for proc in d.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def subscribed(platform: EmbeddedPlatform) -> None:
    sub = naming.subscription_name("thing.new", "maker")

    async def exists() -> bool:
        try:
            await platform.bus.receive("thing.new", sub, max_messages=0, max_wait=timedelta(0))
        except errors.NotFoundError:
            return False
        return True

    await eventually(exists, timeout=15)


async def settled_flow(platform: EmbeddedPlatform, correlation_id: str) -> None:
    async def done() -> bool:
        flow = await load_flow(platform.meta, correlation_id, {"thing.new": ["maker"]})
        return flow.settled

    await eventually(done, timeout=30, interval=0.1)


async def children(platform: EmbeddedPlatform) -> list[str]:
    got = await platform.bus.receive(
        "thing.done", "thing.done_watcher", max_messages=50, max_wait=timedelta(seconds=1)
    )
    return [m.message_id for m in got]


@pytest.mark.parametrize(
    "restart_after_job_ends", [False, True], ids=["job-still-running", "job-finished-meanwhile"]
)
async def test_kill_9_mid_job_then_restart_completes_with_no_duplicate_job_or_event(
    platform: EmbeddedPlatform,
    dispatchers: Dispatchers,
    tmp_path: Path,
    restart_after_job_ends: bool,
) -> None:
    spec = spec_file(tmp_path, sleep=2.0)
    first = dispatchers.start(spec)
    await subscribed(platform)
    root = await platform.raise_event("thing.new", data={"k": "v"})
    runs = tmp_path / "runs"
    await eventually(runs.exists, timeout=15)
    first.send_signal(signal.SIGKILL)
    first.wait()
    if restart_after_job_ends:
        await eventually(lambda: any((tmp_path / "home" / "jobs").glob("*/exit_code")), timeout=15)
    dispatchers.start(spec)
    await settled_flow(platform, root.correlation_id)
    flow = await load_flow(platform.meta, root.correlation_id, {"thing.new": ["maker"]})
    assert flow.succeeded, dispatchers.logs()
    assert runs.read_text() == "x", "the module ran more than once"
    attempts = await platform.meta.list_attempts(correlation_id=root.correlation_id)
    assert [(a.attempt, a.state) for a in attempts] == [(1, AttemptState.SUCCEEDED)]
    assert "adopting job" in dispatchers.logs()
    assert len(await children(platform)) == 1


async def test_sigterm_stops_receiving_finishes_in_flight_and_leaves_the_rest(
    platform: EmbeddedPlatform, dispatchers: Dispatchers, tmp_path: Path
) -> None:
    spec = spec_file(tmp_path, sleep=1.5, max_in_flight=1)
    proc = dispatchers.start(spec)
    await subscribed(platform)
    roots = [await platform.raise_event("thing.new") for _ in range(3)]
    runs = tmp_path / "runs"
    await eventually(runs.exists, timeout=15)
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 20)
    assert code == 0, dispatchers.logs()
    assert runs.read_text() == "x", "a job was started after SIGTERM"
    states = [
        a.state
        for r in roots
        for a in await platform.meta.list_attempts(correlation_id=r.correlation_id)
    ]
    assert states == [AttemptState.SUCCEEDED], (
        "the in-flight job did not finish within the grace period"
    )
    counts = await platform.bus.counts("thing.new", naming.subscription_name("thing.new", "maker"))
    assert counts.active == 2, "unstarted messages were not left on the bus for other dispatchers"
    assert "Traceback" not in dispatchers.logs()
