"""Handler data plane: prepare and commit of one big file and of many 4 KiB files vs `cp -r`.

Ion: the handler's `prepare` (the parent's files: blob store -> in/data) and `commit` (out/data
-> blob store, plus one event file listing every file, so its eventMeta carries them all) on the
embedded backends (filesystem blobs, SQLite meta and bus), in-process as the dispatcher runs
them. Between the two, in/data is renamed to out/data (a module passing its input through).

Baseline: `cp -r` of the very same tree, measured in the same round right before each step:
prepare is compared with `cp -r <blob dir> <dir>`, commit with `cp -r out/data <dir>`, and
prepare+commit with the sum of the two copies (the handler moves the data twice: down, then
up). Every step starts after `sync`, so no step pays for another's dirty pages; which of the pair
runs first alternates by round. The median of the rounds is reported (5; `--quick`: 3).

Sizes: 1 GiB and 10,000 x 4 KiB (`--quick`: 64 MiB and 1,000 x 4 KiB).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

from _common import note, parse_args, report, scratch

from ion.core.contract import JobLayout
from ion.core.events import Context, DocumentType, Event, EventMeta
from ion.core.testing.embedded import EmbeddedBackends
from ion.handler.commit import commit
from ion.handler.job import HandlerJob
from ion.handler.prepare import prepare

MiB = 1024 * 1024


@dataclass
class Rounds:
    prepare: list[float] = field(default_factory=list)
    commit: list[float] = field(default_factory=list)
    cp_down: list[float] = field(default_factory=list)
    cp_up: list[float] = field(default_factory=list)


def make_big(root: Path, size: int) -> list[str]:
    block = os.urandom(MiB)
    with (root / "video.raw").open("wb") as out:
        for _ in range(size // MiB):
            out.write(block)
    return ["video.raw"]


def make_small(root: Path, count: int) -> list[str]:
    names = []
    for i in range(count):
        rel = f"d{i // 500:03d}/f{i:05d}.bin"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(4096))
        names.append(rel)
    return names


def sync_disks() -> None:
    """Flush dirty pages, so the next timed step does not pay for an earlier one's."""
    subprocess.run(["sync"], check=True)


def copy_tree(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)


def cp_r(src: Path, dst: Path) -> float:
    """Time `cp -r src dst` (after a sync)."""
    sync_disks()
    start = time.perf_counter()
    copy_tree(src, dst)
    return time.perf_counter() - start


def new_event(parent_module: str) -> Event:
    return Event(
        context=Context(
            name=parent_module,
            event_id=str(uuid.uuid4()),
            correlation_id=str(uuid.uuid4()),
            parent_event_id=str(uuid.uuid4()),
            document_type=DocumentType.EVENT_META.value,
        ),
        type="bench.input",
    )


async def timed(action: Awaitable[object]) -> float:
    sync_disks()
    start = time.perf_counter()
    await action
    return time.perf_counter() - start


async def one_round(
    backends: EmbeddedBackends,
    tmp: Path,
    source: Path,
    names: list[str],
    rounds: Rounds,
    *,
    cp_first: bool,
) -> None:
    event = new_event("parent")
    ctx = event.context
    parent_prefix = f"{ctx.correlation_id}/{ctx.parent_event_id}/{ctx.name}"
    blob_dir = backends.blobs.path_of(parent_prefix)
    blob_dir.parent.mkdir(parents=True, exist_ok=True)
    copy_tree(source, blob_dir)  # stage the parent's outputs, untimed
    await backends.meta.upsert_event_meta(
        EventMeta(
            id=ctx.event_id, context=ctx, type=event.type, files=names, files_prefix=parent_prefix
        )
    )
    job = HandlerJob(
        module="bench",
        event=event,
        publishes=frozenset({"bench.output"}),
        layout=JobLayout(tmp / "job" / "ion"),
    )
    copies = tmp / "copies"
    copies.mkdir(exist_ok=True)

    # The machine drifts (other work, the VM's page cache), so the order alternates by round.
    if cp_first:
        rounds.cp_down.append(cp_r(blob_dir, copies / "down"))
    rounds.prepare.append(await timed(prepare(job, blobs=backends.blobs, meta=backends.meta)))
    if not cp_first:
        rounds.cp_down.append(cp_r(blob_dir, copies / "down"))
    assert sum(1 for p in job.layout.in_data.rglob("*") if p.is_file()) == len(names)

    # The module passes its input through: in/data becomes out/data, and one event lists all.
    job.layout.out_data.rmdir()
    job.layout.in_data.rename(job.layout.out_data)
    (job.layout.out_events / "e.json").write_text(
        json.dumps(
            [
                {"key": "eventType", "value": "bench.output"},
                {"key": "files", "value": ",".join(names)},
            ]
        )
    )

    if cp_first:
        rounds.cp_up.append(cp_r(job.layout.out_data, copies / "up"))
    rounds.commit.append(
        await timed(commit(job, blobs=backends.blobs, meta=backends.meta, bus=backends.bus))
    )
    if not cp_first:
        rounds.cp_up.append(cp_r(job.layout.out_data, copies / "up"))
    prefix = f"{ctx.correlation_id}/{ctx.event_id}/{job.module}"
    assert len(await backends.blobs.list(prefix + "/")) == len(names)

    for path in (copies, tmp / "job", blob_dir, backends.blobs.path_of(ctx.correlation_id)):
        shutil.rmtree(path, ignore_errors=True)


async def measure(tmp: Path, label: str, names_maker: str, amount: int, reps: int) -> None:
    source = tmp / "source"
    source.mkdir()
    names = make_big(source, amount) if names_maker == "big" else make_small(source, amount)
    rounds = Rounds()
    async with EmbeddedBackends.open(tmp / "backends") as backends:
        for i in range(reps):
            await one_round(backends, tmp, source, names, rounds, cp_first=i % 2 == 0)
    shutil.rmtree(source)
    prep, comm = statistics.median(rounds.prepare), statistics.median(rounds.commit)
    down, up = statistics.median(rounds.cp_down), statistics.median(rounds.cp_up)
    both = statistics.median(p + c for p, c in zip(rounds.prepare, rounds.commit, strict=True))
    cps = statistics.median(d + u for d, u in zip(rounds.cp_down, rounds.cp_up, strict=True))
    report(f"dataplane.{label}.prepare", prep, "s", baseline=down, target="ratio<=1.3")
    report(f"dataplane.{label}.commit", comm, "s", baseline=up, target="ratio<=1.3")
    report(f"dataplane.{label}.prepare_commit", both, "s", baseline=cps, target="ratio<=1.3")


def main() -> None:
    args = parse_args(__doc__ or "")
    big = 64 * MiB if args.quick else 1024 * MiB
    small = 1_000 if args.quick else 10_000
    reps = 3 if args.quick else 5
    note("dataplane baseline: cp -r of the same tree (prepare_commit: the two copies summed)")
    with scratch("dataplane-big", keep=args.keep) as tmp:
        asyncio.run(measure(tmp, f"{big // MiB}MiB", "big", big, reps))
    with scratch("dataplane-small", keep=args.keep) as tmp:
        asyncio.run(measure(tmp, f"{small}x4KiB", "small", small, reps))


if __name__ == "__main__":
    main()
