"""Dispatcher processes (`ion-dispatcher serve`) over embedded backends the test shares.

Fixtures `backends` and `dispatchers` live in tests/conftest.py; these are the helpers the
fault tests share: a module spec on disk, raising root events as a front API does, and
waiting for what a dispatcher did.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import timedelta
from pathlib import Path

import yaml

from ion.core import errors, naming
from ion.core.events import EventMeta, new_root_event
from ion.core.ports.bus import OutgoingMessage
from ion.core.records import AttemptState
from ion.core.testing import eventually
from ion.core.testing.embedded import EmbeddedBackends

MODULE = """
import json, os, pathlib, sys, time
base = pathlib.Path(os.environ["HANDLER_BASE_DIR"])
meta = json.loads((base / "in/eventmeta.json").read_text())
name = next(p["value"] for p in meta if p["key"] == "name")
with open(os.environ["RUNS_FILE"], "a") as runs:
    runs.write(name + "\\n")
release = os.environ.get("RELEASE_FILE", "")
while release and not os.path.exists(release):
    time.sleep(0.02)
time.sleep(float(os.environ.get("SLEEP", "0")))
(base / "out/data/result.txt").write_text("done " + name)
(base / "out/events/done.json").write_text(json.dumps([
    {"key": "eventType", "value": "thing.done"}, {"key": "files", "value": "result.txt"}]))
"""


def spec_file(
    tmp_path: Path, *, sleep: float = 0.0, max_in_flight: int = 4, release: Path | None = None
) -> Path:
    """Write module `maker` (thing.new -> thing.done) and its spec; return the spec's path.

    The module appends its event's `name` to `tmp_path/runs`, then, if `release` is given,
    waits until that file exists, so a test decides when it ends.
    """
    module = tmp_path / "module.py"
    module.write_text(textwrap.dedent(MODULE))
    path = tmp_path / "maker.yaml"
    env = {"RUNS_FILE": str(tmp_path / "runs"), "SLEEP": str(sleep)}
    if release is not None:
        env["RELEASE_FILE"] = str(release)
    path.write_text(
        yaml.safe_dump(
            {
                "name": "maker",
                "subscribes_to": "thing.new",
                "publishes": ["thing.done"],
                "command": [sys.executable, str(module)],
                "env": env,
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
            "ION_DISPATCHER__SHUTDOWN_GRACE_SECONDS": "10",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, spec: Path, *, failpoints: str = "") -> subprocess.Popen[bytes]:
        """Start a dispatcher; with `failpoints`, it kills itself at those points."""
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

    def log_of(self, index: int) -> Path:
        """The output file of the `index`th dispatcher started."""
        return self.tmp_path / f"dispatcher-{index}.log"

    def logs(self) -> str:
        """Every dispatcher's output."""
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("dispatcher-*.log")))

    async def receiving(self, index: int = -1) -> None:
        """Wait until a dispatcher is receiving."""
        log = self.log_of(index % len(self.procs))
        await eventually(lambda: "receiving from" in log.read_text(), timeout=20)


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


SUBSCRIPTION = naming.subscription_name("thing.new", "maker")


async def wait_subscribed(backends: EmbeddedBackends) -> None:
    """Wait until the module's subscription exists (a dispatcher has started)."""

    async def exists() -> bool:
        try:
            await backends.bus.receive(
                "thing.new", SUBSCRIPTION, max_messages=0, max_wait=timedelta(0)
            )
        except errors.NotFoundError:
            return False
        return True

    await eventually(exists, timeout=20)


async def succeeded(
    backends: EmbeddedBackends, flows: list[str], timeout: float, *, log: str = ""
) -> None:
    """Wait until each flow's module run has succeeded; if not, say where each one is."""

    async def pending() -> list[str]:
        waiting = []
        for flow in flows:
            states = [a.state for a in await backends.meta.list_attempts(correlation_id=flow)]
            if AttemptState.SUCCEEDED not in states:
                waiting.append(flow)
        return waiting

    async def done() -> bool:
        return not await pending()

    try:
        await eventually(done, timeout=timeout, interval=0.2)
    except AssertionError:
        lines = []
        for flow in await pending():
            attempts = await backends.meta.list_attempts(correlation_id=flow)
            lines.append(f"{flow}: {[(a.attempt, a.state, a.reason[:200]) for a in attempts]}")
        counts = await backends.bus.counts("thing.new", SUBSCRIPTION)
        dead = await backends.bus.peek("thing.new", SUBSCRIPTION, dead_letter=True)
        reasons = [(m.dead_letter_reason, m.dead_letter_description[:200]) for m in dead]
        raise AssertionError(
            f"{len(lines)} flow(s) did not succeed within {timeout}s:\n"
            + "\n".join(lines)
            + f"\nbus: {counts}; dead letters: {reasons}\n{log[-6000:]}"
        ) from None


async def check_effectively_once(
    backends: EmbeddedBackends, flows: list[str], runs: Path, log: str
) -> None:
    """Each flow: one run of the module, one child event published, its output stored."""
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
