"""Benchmark AzureBlobStore against the bare azure-storage-blob SDK, on a local Azurite.

Run: ``.venv/bin/python bench/bench_azure_blob.py [--small] [--skip-big]``. It writes the data
under bench/.work/ (streamed: one big file, many 4 KiB files) and measures upload and download of
each through AzureBlobStore and through the SDK alone (``upload_blob``/``download_blob().readinto``
with the same max_concurrency and 4 MiB blocks): the same files, the same number of files at once.
The small files are measured two ways: `put_file`/`get_file` called per file, `--files-concurrency`
at once (the SDK side the same), and `put_files`/`get_files` calls of 1/`--slices` of the files
each (what the handler does with a tree) against the SDK with as many files at once as the
store's batches use.

Each round starts a fresh Azurite per side (in memory, from tools/emulators), so neither side
inherits the other's garbage. The sides take turns, phase by phase and, for the small files,
slice by slice (`--slices`, first side alternating), so a burst of load from elsewhere on a shared
machine hits both about equally. One line per measure: ``name value unit baseline=<v> ratio=<r>
rounds=<lo>-<hi>``: value and baseline are each side's best round, ratio = ours / baseline (higher
is better), rounds is the range of the per-round ratios. AzureBlobStore does more per file
(whole-blob and per-block MD5, downloads written to a temporary file renamed into place, parent
directories made).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from azure.storage.blob.aio import BlobServiceClient  # noqa: E402

from ion.core.backends.azure.blobs import (  # noqa: E402
    BATCH_CONCURRENCY,
    AzureBlobOptions,
    AzureBlobStore,
)
from tests.fakes import azure_emulators  # noqa: E402

MiB = 1024 * 1024
CHUNK = 4 * MiB
BATCH_FILES = BATCH_CONCURRENCY
"""Files at once of the SDK side of the batch measures: as many as AzureBlobStore's batches."""


def make_big_file(path: Path, size: int) -> None:
    """Write `size` random bytes, 1 MiB at a time (never the whole file in memory)."""
    if path.exists() and path.stat().st_size == size:
        return
    with path.open("wb") as out:
        written = 0
        while written < size:
            piece = os.urandom(min(MiB, size - written))
            out.write(piece)
            written += len(piece)


def make_small_files(directory: Path, count: int, size: int) -> list[Path]:
    """Write `count` files of `size` random bytes; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"f{i:05d}.bin" for i in range(count)]
    for path in paths:
        if not (path.exists() and path.stat().st_size == size):
            path.write_bytes(os.urandom(size))
    return paths


async def timed(action: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await action()
    return time.perf_counter() - start


async def bounded(count: int, limit: int, one: Callable[[int], Awaitable[None]]) -> None:
    """Run `one(i)` for i in range(count), at most `limit` at a time."""
    slots = asyncio.Semaphore(limit)

    async def run(i: int) -> None:
        async with slots:
            await one(i)

    async with asyncio.TaskGroup() as group:
        for i in range(count):
            group.create_task(run(i))


class Sdk:
    """The baseline: the SDK's own parallel transfers, nothing else."""

    def __init__(self, connection_string: str, container: str, concurrency: int) -> None:
        self.service = BlobServiceClient.from_connection_string(
            connection_string, max_single_put_size=CHUNK, max_block_size=CHUNK
        )
        self.container = self.service.get_container_client(container)
        self.concurrency = concurrency

    async def setup(self) -> None:
        await self.container.create_container()

    async def put_file(self, key: str, source: Path) -> None:
        with source.open("rb") as data:
            await self.container.get_blob_client(key).upload_blob(
                data,
                length=source.stat().st_size,
                overwrite=True,
                max_concurrency=self.concurrency,
            )

    async def get_file(self, key: str, destination: Path) -> None:
        downloader = await self.container.get_blob_client(key).download_blob(
            max_concurrency=self.concurrency
        )
        with destination.open("wb") as out:
            await downloader.readinto(out)

    async def put_files(self, items: list[tuple[str, Path]]) -> None:
        await bounded(len(items), BATCH_FILES, lambda i: self.put_file(*items[i]))

    async def get_files(self, items: list[tuple[str, Path]]) -> None:
        await bounded(len(items), BATCH_FILES, lambda i: self.get_file(*items[i]))

    async def aclose(self) -> None:
        await self.container.delete_container()
        await self.service.close()


class Ours:
    def __init__(
        self, connection_string: str, container: str, concurrency: int, chunk: int
    ) -> None:
        options: AzureBlobOptions = {"max_concurrency": concurrency}
        if chunk:
            options["chunk_size"] = chunk
        self.store = AzureBlobStore.from_connection_string(connection_string, container, **options)
        self.connection_string = connection_string
        self.container = container

    async def setup(self) -> None:
        pass  # the store creates its container on first write

    async def put_file(self, key: str, source: Path) -> None:
        await self.store.put_file(key, source)

    async def get_file(self, key: str, destination: Path) -> None:
        await self.store.get_file(key, destination)

    async def put_files(self, items: list[tuple[str, Path]]) -> None:
        await self.store.put_files(items)

    async def get_files(self, items: list[tuple[str, Path]]) -> None:
        await self.store.get_files(items)

    async def aclose(self) -> None:
        await self.store.aclose()
        async with BlobServiceClient.from_connection_string(self.connection_string) as service:
            await service.delete_container(self.container)


async def measure_round(
    args: argparse.Namespace, round_: int, big: Path | None, small: list[Path], logs: Path
) -> dict[str, dict[str, float]]:
    """One round: each side on a fresh Azurite of its own, the two taking turns."""
    names = ("sdk", "ours") if round_ % 2 == 0 else ("ours", "sdk")
    seconds: dict[str, dict[str, float]] = {name: {} for name in names}
    outs = {name: args.workdir / "out" / name for name in names}
    with (
        azure_emulators.running_azurite(logs / "sdk") as sdk_azurite,
        azure_emulators.running_azurite(logs / "ours") as ours_azurite,
    ):
        sides: dict[str, Sdk | Ours] = {
            "sdk": Sdk(sdk_azurite.connection_string, "bench-sdk", args.concurrency),
            "ours": Ours(
                ours_azurite.connection_string, "bench-ours", args.concurrency, args.chunk_mib * MiB
            ),
        }
        for name, side in sides.items():
            await side.setup()
            shutil.rmtree(outs[name], ignore_errors=True)
            (outs[name] / "each").mkdir(parents=True)

        async def turns(
            phase: str, count: int, job: Callable[[str, Sdk | Ours, int], Awaitable[None]]
        ) -> None:
            for k in range(count):
                order = names if k % 2 == 0 else names[::-1]
                for name in order:
                    took = await timed(functools.partial(job, name, sides[name], k))
                    seconds[name][phase] = seconds[name].get(phase, 0.0) + took

        if big is not None:
            source = big

            async def put_big(name: str, side: Sdk | Ours, _: int) -> None:
                await side.put_file("big/file.bin", source)

            async def get_big(name: str, side: Sdk | Ours, _: int) -> None:
                target = outs[name] / "big.bin"
                await side.get_file("big/file.bin", target)
                if target.stat().st_size != source.stat().st_size:
                    raise SystemExit("big download has the wrong size")
                target.unlink()

            await turns("big_upload", 1, put_big)
            await turns("big_download", 1, get_big)

        slices = [small[k :: args.slices] for k in range(args.slices)]
        index = {path: i for i, path in enumerate(small)}

        async def put_each(name: str, side: Sdk | Ours, k: int) -> None:
            part = slices[k]
            await bounded(
                len(part),
                args.files_concurrency,
                lambda i: side.put_file(f"small/{index[part[i]]:05d}", part[i]),
            )

        async def get_each(name: str, side: Sdk | Ours, k: int) -> None:
            part = slices[k]
            await bounded(
                len(part),
                args.files_concurrency,
                lambda i: side.get_file(
                    f"small/{index[part[i]]:05d}", outs[name] / "each" / f"{index[part[i]]:05d}"
                ),
            )

        async def put_batch(name: str, side: Sdk | Ours, k: int) -> None:
            await side.put_files([(f"batch/{index[p]:05d}", p) for p in slices[k]])

        async def get_batch(name: str, side: Sdk | Ours, k: int) -> None:
            # A directory that does not exist yet (the bare SDK makes none, so it gets it made).
            target = outs[name] / "batch" / str(k)
            if name == "sdk":
                target.mkdir(parents=True)
            await side.get_files(
                [(f"batch/{index[p]:05d}", target / f"{index[p]:05d}") for p in slices[k]]
            )

        await turns("small_upload", args.slices, put_each)
        await turns("small_download", args.slices, get_each)
        await turns("small_upload_batch", args.slices, put_batch)
        await turns("small_download_batch", args.slices, get_batch)
        for name in names:
            got = sorted((outs[name] / "batch").rglob("*"))
            if sum(1 for p in got if p.is_file()) != len(small):
                raise SystemExit(f"{name}: the batch downloads are missing files")
        for side in sides.values():
            await side.aclose()

    results: dict[str, dict[str, float]] = {}
    small_mib = sum(p.stat().st_size for p in small) / MiB
    for name in names:
        took = seconds[name]
        rates: dict[str, float] = {}
        if big is not None:
            size_mib = big.stat().st_size / MiB
            rates["big_upload"] = size_mib / took["big_upload"]
            rates["big_download"] = size_mib / took["big_download"]
        rates["small_upload"] = len(small) / took["small_upload"]
        rates["small_upload_mib"] = small_mib / took["small_upload"]
        rates["small_download"] = len(small) / took["small_download"]
        rates["small_download_mib"] = small_mib / took["small_download"]
        rates["small_upload_batch"] = len(small) / took["small_upload_batch"]
        rates["small_download_batch"] = len(small) / took["small_download_batch"]
        results[name] = rates
    return results


UNITS = {
    "big_upload": "MiB/s",
    "big_download": "MiB/s",
    "small_upload": "files/s",
    "small_upload_mib": "MiB/s",
    "small_download": "files/s",
    "small_download_mib": "MiB/s",
    "small_upload_batch": "files/s",
    "small_download_batch": "files/s",
}


async def run(args: argparse.Namespace, logs: Path) -> None:
    work: Path = args.workdir
    big_size = 64 * MiB if args.small else 1024 * MiB
    count = 1_000 if args.small else 10_000
    big: Path | None = None
    print(f"# preparing data in {work}", file=sys.stderr)
    if not args.skip_big:
        big = work / f"big-{big_size // MiB}MiB.bin"
        make_big_file(big, big_size)
    small = make_small_files(work / "small", count, 4 * 1024)
    print(
        f"# {'no big file' if big is None else f'{big_size // MiB} MiB file'}, {count} x 4 KiB"
        f" files, max_concurrency={args.concurrency}, ours:"
        f" {f'{args.chunk_mib} MiB' if args.chunk_mib else 'default'} blocks/ranges, SDK: 4 MiB"
        f" blocks, 32+4 MiB gets, {args.files_concurrency} files at once ({BATCH_FILES} in the"
        f" batch measures), a fresh Azurite per side and round, sides taking turns over"
        f" {args.slices} slices, best of {args.repeat};"
        f" load {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
    )
    rounds: dict[str, list[dict[str, float]]] = {"ours": [], "sdk": []}
    for round_ in range(args.repeat):
        results = await measure_round(args, round_, big, small, logs / str(round_))
        for name, rates in results.items():
            rounds[name].append(rates)
        ours, sdk = rounds["ours"][-1], rounds["sdk"][-1]
        ratios = " ".join(f"{key}={ours[key] / sdk[key]:.2f}" for key in UNITS if key in ours)
        print(
            f"# round {round_ + 1}: {ratios}; load {os.getloadavg()[0]:.2f}",
            file=sys.stderr,
            flush=True,
        )
    for key, unit in UNITS.items():
        if key not in rounds["ours"][0]:
            continue
        ours_best = max(r[key] for r in rounds["ours"])
        sdk_best = max(r[key] for r in rounds["sdk"])
        each = [o[key] / b[key] for o, b in zip(rounds["ours"], rounds["sdk"], strict=True)]
        print(
            f"{key} {ours_best:.1f} {unit} baseline={sdk_best:.1f} ratio={ours_best / sdk_best:.2f}"
            f" rounds={min(each):.2f}-{max(each):.2f}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="64 MiB and 1,000 files (quick)")
    parser.add_argument("--skip-big", action="store_true", help="only the small-file measures")
    parser.add_argument("--concurrency", type=int, default=8, help="blocks in flight per file")
    parser.add_argument(
        "--chunk-mib", type=int, default=0, help="AzureBlobStore block/range MiB (0: its default)"
    )
    parser.add_argument("--files-concurrency", type=int, default=64, help="small files at once")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best of each is kept")
    parser.add_argument(
        "--slices", type=int, default=10, help="small-file slices the sides take turns over"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=_ROOT / "bench" / ".work" / "azure_blob",
        help="where the data goes",
    )
    args = parser.parse_args()
    reason = azure_emulators.missing_emulators()
    if reason:
        print(f"bench_azure_blob: {reason}", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="azurite-", dir=args.workdir) as logs:
        asyncio.run(run(args, Path(logs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
