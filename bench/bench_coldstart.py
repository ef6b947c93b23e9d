"""Handler cold start: wall time and peak RSS of a fresh `ion-handler` process.

Ion: `ion-handler --help`, and a real `ion-handler prepare` (SQLite meta and filesystem blobs
under a scratch directory; the parent's eventMeta lists one 4 KiB file, which is downloaded).
Baseline: `python -c pass` with the same interpreter, measured in the same rounds.
Each value is the median of the rounds; peak RSS is GNU time's %M (maximum resident set).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from _common import VENV_BIN, clean_env, note, parse_args, report, scratch

from ion.core.events import Context, DocumentType, EventMeta, pairs
from ion.core.testing.embedded import EmbeddedBackends

TIME = "/usr/bin/time"


def run(argv: list[str], env: dict[str, str], rss_file: Path) -> tuple[float, float]:
    """Run argv to completion; return (wall seconds, peak RSS in MB).

    Peak RSS comes from GNU time, a small process that forks and execs argv: measured from
    this (large) process, a child's maxrss would include the pages it inherited at fork.
    """
    start = time.perf_counter()
    done = subprocess.run(
        [TIME, "-f", "%M", "-o", str(rss_file), *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({done.returncode}): {done.stderr.decode()}")
    return wall, int(rss_file.read_text().split()[-1]) / 1024  # %M is in KiB


async def stage(backends: EmbeddedBackends, tmp: Path) -> list[str]:
    """A parent eventMeta with one file; return the prepare flags for a job on it."""
    ctx = Context(
        name="parent",
        event_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        parent_event_id=str(uuid.uuid4()),
        document_type=DocumentType.EVENT_META.value,
    )
    prefix = f"{ctx.correlation_id}/{ctx.parent_event_id}/parent"
    src = tmp / "input.bin"
    src.write_bytes(os.urandom(4096))
    await backends.blobs.put_file(f"{prefix}/input.bin", src)
    await backends.meta.upsert_event_meta(
        EventMeta(
            id=ctx.event_id,
            context=ctx,
            type="bench.input",
            files=["input.bin"],
            data=pairs({"k": "v"}),
            files_prefix=prefix,
        )
    )
    return [
        "prepare",
        "--context.name=bench",
        f"--context.eventid={ctx.event_id}",
        f"--context.correlationid={ctx.correlation_id}",
        f"--context.parenteventid={ctx.parent_event_id}",
        f"--basedir={tmp / 'job'}",
    ]


def main() -> None:
    args = parse_args(__doc__ or "")
    if not os.access(TIME, os.X_OK):
        raise SystemExit(f"bench_coldstart needs GNU time at {TIME} to measure peak RSS")
    rounds = 5 if args.quick else 15
    handler = str(VENV_BIN / "ion-handler")
    note("coldstart baseline: python -c pass (same interpreter); medians of rounds")
    with scratch("coldstart", keep=args.keep) as tmp:

        async def setup() -> list[str]:
            async with EmbeddedBackends.open(tmp / "backends") as backends:
                return await stage(backends, tmp)

        prepare_args = asyncio.run(setup())
        env = clean_env(**EmbeddedBackends.open(tmp / "backends").env)
        results: dict[str, list[tuple[float, float]]] = {"base": [], "help": [], "prepare": []}
        for _ in range(rounds):
            rss = tmp / "rss"
            results["base"].append(run([sys.executable, "-c", "pass"], env, rss))
            results["help"].append(run([handler, "--help"], env, rss))
            results["prepare"].append(run([handler, *prepare_args], env, rss))
        assert (tmp / "job" / "in" / "data" / "input.bin").stat().st_size == 4096

    def med(key: str, i: int) -> float:
        return statistics.median(r[i] for r in results[key])

    for what in ("help", "prepare"):
        report(
            f"coldstart.{what}.wall", med(what, 0), "s", baseline=med("base", 0), target="<=0.5s"
        )
        report(
            f"coldstart.{what}.peak_rss",
            med(what, 1),
            "MB",
            baseline=med("base", 1),
            target="<=60MB",
        )


if __name__ == "__main__":
    main()
