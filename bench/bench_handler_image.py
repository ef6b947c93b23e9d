"""Handler cold start inside its image: `ion-handler prepare` of a root event in a fresh container.

Ion: `ion-handler prepare` for a root event (no parent files: an eventMeta with data only) in a
fresh container of localhost/ion-handler:dev, as a job pod's init container runs it, with the
embedded SQLite/filesystem backends on a mounted scratch directory. Baseline: `python3 -c pass`
in a fresh container of the same image. The two alternate (A B A B) in the same run. Times and
peak RSS (and CPU time) are of the process inside the container, measured there by a small wrapper (so the
engine's own container set-up, reported apart as `docker_run`, is not in them); medians.
Needs a Docker engine (DOCKER_HOST, e.g. from tools/docker/prepare.sh) and the image (`make
images`); exits 2 (skipped) without them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from _common import note, parse_args, report, scratch

from ion.core.events import Context, DocumentType, EventMeta, pairs
from ion.core.testing.embedded import EmbeddedBackends

IMAGE = os.environ.get("ION_HANDLER_IMAGE", "localhost/ion-handler:dev")
SKIPPED = 2
# Runs in the container: time the child and read its peak RSS (KiB) from the kernel.
WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "wall = time.perf_counter() - t\n"
    "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "cpu = use.ru_utime + use.ru_stime\n"
    "print(f'ION-BENCH {wall:.6f} {use.ru_maxrss} {cpu:.6f}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def run_in_container(data: Path, argv: list[str]) -> tuple[float, float, float, float]:
    """(process wall s, peak RSS MB, whole `docker run` wall s, process CPU s), fresh container.

    CPU time (user + system) moves less than wall time when other work shares the cores.
    """
    start = time.perf_counter()
    done = docker(
        "run", "--rm", "--network", "none", "-v", f"{data}:/data",
        "-e", "ION_BUS__URL=sqlite:////data/bus.db",
        "-e", "ION_BLOBS__URL=file:///data/blobs",
        "-e", "ION_META__URL=sqlite:////data/meta.db",
        "--entrypoint", "python3", IMAGE, "-c", WRAPPER, *argv,
        check=False,
    )  # fmt: skip
    total = time.perf_counter() - start
    line = next((x for x in done.stderr.splitlines() if x.startswith("ION-BENCH ")), "")
    if done.returncode != 0 or not line:
        raise SystemExit(f"{' '.join(argv[:2])} failed in {IMAGE}: {done.stderr[-2000:]}")
    _, wall, rss, cpu = line.split()
    return float(wall), int(rss) / 1024, total, float(cpu)


async def stage(data: Path) -> Context:
    """A root event's eventMeta (data, no files) in the scratch backends."""
    event_id = str(uuid.uuid4())
    ctx = Context(
        name="frontapi",
        event_id=event_id,
        correlation_id=event_id,
        parent_event_id="",
        document_type=DocumentType.EVENT_META.value,
    )
    async with EmbeddedBackends.open(data) as backends:
        await backends.meta.upsert_event_meta(
            EventMeta(id=event_id, context=ctx, type="bench.root", data=pairs({"k": "v"}))
        )
    return ctx


def main() -> None:
    args = parse_args(__doc__ or "")
    if shutil.which("docker") is None or docker("image", "inspect", IMAGE, check=False).returncode:
        print(
            f"bench_handler_image: needs a Docker engine (DOCKER_HOST) and {IMAGE} (make images)",
            file=sys.stderr,
        )
        sys.exit(SKIPPED)
    rounds = 3 if args.quick else 9
    note(f"handler_image baseline: python3 -c pass in a fresh {IMAGE} container; A B A B")
    with scratch("handler-image", keep=args.keep) as tmp:
        data = tmp / "data"
        data.mkdir()
        ctx = asyncio.run(stage(data))
        for path in [data, *data.rglob("*")]:  # the image's user (10001) writes the backends
            if os.geteuid() == 0:
                os.chown(path, 10001, 10001)
            else:
                path.chmod(0o777 if path.is_dir() else 0o666)
        prepare = [
            "ion-handler", "prepare", "--context.name=bench",
            f"--context.eventid={ctx.event_id}", f"--context.correlationid={ctx.correlation_id}",
            "--event-type=bench.root", "--valideventtypes=bench.done",
        ]  # fmt: skip
        base: list[tuple[float, float, float, float]] = []
        ion: list[tuple[float, float, float, float]] = []
        run_in_container(data, ["python3", "-c", "pass"])  # warm the engine's caches for both
        for _ in range(rounds):
            base.append(run_in_container(data, ["python3", "-c", "pass"]))
            ion.append(run_in_container(data, prepare))

    def med(results: list[tuple[float, float, float, float]], i: int) -> float:
        return statistics.median(r[i] for r in results)

    report("handler_image.prepare.wall", med(ion, 0), "s", baseline=med(base, 0), target="<=0.25s")
    report("handler_image.prepare.cpu", med(ion, 3), "s", baseline=med(base, 3))
    report("handler_image.prepare.peak_rss", med(ion, 1), "MB", baseline=med(base, 1))
    report("handler_image.docker_run.wall", med(ion, 2), "s", baseline=med(base, 2))


if __name__ == "__main__":
    main()
