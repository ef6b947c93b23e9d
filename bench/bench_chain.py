"""Per-hop overhead of a 10-module chain of no-op modules, vs a bare spawn of the same command.

Ion: an ControlPlane (SQLite bus and meta, filesystem blobs under a scratch directory) runs
modules hop-0 .. hop-9; module i subscribes to `hop.i` and publishes `hop.i+1` by writing one
event file with a tiny sh script (`/bin/sh hop.sh hop.<i+1>`). A root `hop.0` event runs the
whole chain; per hop = (end of the last module's attempt - raise of the root event) / 10.
One warm-up flow, then the median of the measured flows.

Baseline: a bare spawn of the same no-op command (`/bin/sh hop.sh hop.1`, writing the same
event file) with asyncio's subprocess API, as the local executor spawns; ten before each
measured flow, in the same event loop, and the median of all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import note, parse_args, report, scratch

from ion.core import errors
from ion.core.config import load_settings
from ion.core.flowindex import FlowStatus
from ion.core.modules import ModuleSpec
from ion.core.records import AttemptState, ModuleRecord
from ion.management.control import ControlPlane

HOPS = 10
SCRIPT = """#!/bin/sh
# A no-op module that raises one event of the type given as $1.
printf '[{"key":"eventType","value":"%s"}]' "$1" > "$HANDLER_BASE_DIR/out/events/e.json"
"""


async def bare_spawns(script: Path, tmp: Path, count: int) -> list[float]:
    """Wall times of `count` bare spawns of the no-op command, each awaited."""
    base = tmp / "bare"
    (base / "out" / "events").mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HANDLER_BASE_DIR": str(base)}
    times = []
    for _ in range(count):
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", str(script), "hop.1", env=env, stdin=asyncio.subprocess.DEVNULL
        )
        assert await proc.wait() == 0
        times.append(time.perf_counter() - start)
    assert (base / "out" / "events" / "e.json").is_file()
    return times


async def settled_summary(platform: ControlPlane, correlation_id: str, timeout: float) -> None:
    """Wait until the flow's summary (one row) says it is no longer running.

    Polled every 10 ms, as `ion flow get --watch` does every second: the store's summary is a
    point read, where a flow's whole tree (`wait_settled`) costs milliseconds of the same CPU
    the chain runs on (it made the measured hop about 10% slower)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(errors.NotFoundError):
            summary = await platform.meta.get_flow_summary(correlation_id)
            if summary.status != FlowStatus.RUNNING:
                return
        assert time.monotonic() < deadline, f"flow {correlation_id} did not settle"
        await asyncio.sleep(0.01)


async def chain(script: Path, tmp: Path, flows: int) -> tuple[float, float]:
    """Median per-hop time of `flows` flows, and the median bare spawn, both in seconds.

    Ten bare spawns run before each flow, in the same process and event loop: the machine's
    speed drifts (shared hosts), and a baseline taken only at the start skewed the ratio
    by up to 2x between runs."""
    settings = load_settings(environ={"ION_HOME": str(tmp / "home")})
    async with ControlPlane(settings, working_dir=tmp) as platform:
        now = datetime.now(UTC)
        for i in range(HOPS):
            spec = ModuleSpec(
                name=f"hop-{i}",
                subscribes_to=f"hop.{i}",
                publishes=[f"hop.{i + 1}"],
                command=["/bin/sh", str(script), f"hop.{i + 1}"],
                retry_count=0,
                max_execution_seconds=60,
            )
            # Registered in the store as `pipeline run` and `ion module create` do: the flow
            # index then finds each event's subscribers, as it does for a user's flows.
            record = await platform.meta.create_module(
                ModuleRecord(id=spec.name, spec=spec, created_at=now)
            )
            await platform.start_module(record)
        per_hop: list[float] = []
        bare: list[float] = []
        for flow in range(flows + 1):  # the first is a warm-up
            spawns = await bare_spawns(script, tmp, 10)
            if flow:
                bare += spawns
            raised = datetime.now(UTC)
            root = await platform.raise_event("hop.0")
            await settled_summary(platform, root.correlation_id, timeout=120)
            settled = await platform.wait_settled(root.correlation_id, timeout=10)
            assert settled.succeeded, f"flow {root.correlation_id} failed"
            attempts = await platform.meta.list_attempts(
                correlation_id=root.correlation_id, states=frozenset({AttemptState.SUCCEEDED})
            )
            assert len(attempts) == HOPS, len(attempts)
            end = max(a.finished_at for a in attempts if a.finished_at is not None)
            if flow:
                per_hop.append((end - raised).total_seconds() / HOPS)
        return statistics.median(per_hop), statistics.median(bare)


def main() -> None:
    args = parse_args(__doc__ or "")
    flows = 3 if args.quick else 7
    note("chain: no-op module = /bin/sh hop.sh hop.<i+1> (writes one event file)")
    note("chain baseline: bare asyncio spawn of that same command, 10 before each flow, median")
    with scratch("chain", keep=args.keep) as tmp:
        script = tmp / "hop.sh"
        script.write_text(SCRIPT)
        hop, bare = asyncio.run(chain(script, tmp, flows))
    report("chain.per_hop", hop * 1000, "ms", baseline=bare * 1000, target="ratio<=5")


if __name__ == "__main__":
    main()
