"""CPU that idle modules cost the control plane: 50 modules waiting for events that never come.

Ion: a ControlPlane (SQLite bus and meta under a scratch directory) runs 50 modules, each on a
topic of its own, and nothing is published; the process's CPU time (user + system) over 10 s,
as a share of one core.

Baseline: the same control plane with one module, in the same run.
"""

from __future__ import annotations

import asyncio
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import note, parse_args, report, scratch

from ion.core.config import load_settings
from ion.core.modules import ModuleSpec
from ion.core.records import ModuleRecord
from ion.management.control import ControlPlane


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def idle_share(home: Path, modules: int, seconds: float) -> float:
    """Share of one core the control plane uses while `modules` modules wait, idle."""
    settings = load_settings(environ={"ION_HOME": str(home)})
    async with ControlPlane(settings, working_dir=home) as platform:
        now = datetime.now(UTC)
        for i in range(modules):
            spec = ModuleSpec(name=f"idle-{i}", subscribes_to=f"idle.{i}", command=["true"])
            record = await platform.meta.create_module(
                ModuleRecord(id=spec.name, spec=spec, created_at=now)
            )
            await platform.start_module(record)
        await asyncio.sleep(2)  # past start-up, and every receiver has settled into waiting
        cpu, wall = _cpu(), time.perf_counter()
        await asyncio.sleep(seconds)
        return (_cpu() - cpu) / (time.perf_counter() - wall)


def main() -> None:
    args = parse_args(__doc__ or "")
    seconds = 4.0 if args.quick else 10.0
    note(f"idle: CPU share of a control plane over {seconds:g} s with nothing published")
    note("idle baseline: the same with one module")
    with scratch("idle", keep=args.keep) as tmp:
        one = asyncio.run(idle_share(tmp / "one", 1, seconds))
        many = asyncio.run(idle_share(tmp / "many", 50, seconds))
    report("idle.cpu_50_modules", many * 100, "%core", baseline=one * 100)


if __name__ == "__main__":
    main()
