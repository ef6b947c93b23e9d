"""Dispatch throughput of no-op modules, in jobs/s, vs the bare spawn rate of the same command.

Ion: an ControlPlane (SQLite bus and meta, filesystem blobs under a scratch directory) with
one module whose command is `/bin/true` (it writes nothing, so each job is a full prepare,
run, logs and commit with no files), one dispatcher, `max_in_flight` 16. N events are queued
on its topic first; the clock runs from starting the module until the subscription is empty
and nothing is in flight; every job is then checked to have SUCCEEDED.

Baseline: spawning `/bin/true` N times with asyncio's subprocess API, 16 at a time (the same
bound), measured in the same run. ratio = ion / baseline (below 1: slower than bare spawns).

N: 400 (`--quick`: 200).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import note, parse_args, report, scratch

from ion.core import naming
from ion.core.config import load_settings
from ion.core.events import new_root_event
from ion.core.modules import ModuleSpec
from ion.core.ports.bus import OutgoingMessage
from ion.core.records import AttemptState, ModuleRecord
from ion.management.control import ControlPlane

IN_FLIGHT = 16
NOOP = ["/bin/true"]


async def bare_rate(n: int) -> float:
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def spawn() -> None:
        async with slots:
            proc = await asyncio.create_subprocess_exec(*NOOP, stdin=asyncio.subprocess.DEVNULL)
            assert await proc.wait() == 0

    start = time.perf_counter()
    await asyncio.gather(*(spawn() for _ in range(n)))
    return n / (time.perf_counter() - start)


async def ion_rate(tmp: Path, n: int) -> float:
    settings = load_settings(environ={"ION_HOME": str(tmp / "home")})
    spec = ModuleSpec(
        name="noop",
        subscribes_to="tp.in",
        command=NOOP,
        retry_count=0,
        max_in_flight=IN_FLIGHT,
        max_execution_seconds=60,
    )
    record = ModuleRecord(id=spec.name, spec=spec, created_at=datetime.now(UTC))
    subscription = naming.subscription_name(spec.subscribes_to, spec.name)
    async with ControlPlane(settings, working_dir=tmp) as platform:
        # Create the subscription, then queue every event before the dispatcher runs.
        await platform.start_module(record)
        await platform.stop_module(spec.name, remove_subscription=False)
        events = [new_root_event("tp.in", data={"i": str(i)}) for i in range(n)]
        await platform.bus.publish(
            "tp.in", [OutgoingMessage(body=e.to_json(), message_id=e.event_id) for e in events]
        )
        assert (await platform.bus.counts("tp.in", subscription)).active == n

        start = time.perf_counter()
        await platform.start_module(record)
        while True:  # look at the bus only when nothing is in flight (it costs the bus a scan)
            await asyncio.sleep(0.005)
            if platform.module_status(spec.name).jobs_in_flight:
                continue
            if (await platform.bus.counts("tp.in", subscription)).active == 0:
                break
        elapsed = time.perf_counter() - start

        done = await platform.meta.list_attempts(
            module=spec.name, states=frozenset({AttemptState.SUCCEEDED})
        )
        assert len(done) == n, f"{len(done)} of {n} jobs succeeded"
        return n / elapsed


def main() -> None:
    args = parse_args(__doc__ or "")
    n = 200 if args.quick else 400
    note(f"throughput: no-op module = {NOOP}, one dispatcher, {IN_FLIGHT} in flight, {n} jobs")
    note(f"throughput baseline: bare asyncio spawns of {NOOP}, {IN_FLIGHT} at a time")
    with scratch("throughput", keep=args.keep) as tmp:
        bare = asyncio.run(bare_rate(n))
        ion = asyncio.run(ion_rate(tmp, n))
    report("dispatch.throughput", ion, "jobs/s", baseline=bare, target=">=150jobs/s")


if __name__ == "__main__":
    main()
