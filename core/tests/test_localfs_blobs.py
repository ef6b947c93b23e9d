"""The filesystem BlobStore passes the BlobStore contract and refuses keys that leave its root."""

from __future__ import annotations

import asyncio
import errno
import filecmp
import functools
import os
import shutil
import stat
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from ion.core import errors
from ion.core.backends.localfs.blobs import LocalBlobStore, _copy_fd, _Offload
from ion.core.ports.blobs import BlobStore
from ion.core.testing.blobs_contract import BlobStoreContract


class TestLocalBlobStore(BlobStoreContract):
    @pytest.fixture
    async def blobs(self, tmp_path: Path) -> AsyncIterator[BlobStore]:
        store = LocalBlobStore(tmp_path / "blobs")
        yield store
        await store.aclose()


@pytest.mark.parametrize("key", ["../x", "a/../../x", "", "/", "a/./b"])
def test_keys_that_leave_the_root_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(errors.ValidationError):
        LocalBlobStore(tmp_path).path_of(key)


@pytest.mark.parametrize("key", ["a/b c/ü%.txt", "a//b/#?&.png", "x", "deep/er/than/that.bin"])
async def test_url_for_is_the_files_uri(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "with space" / "ü")
    assert await store.url_for(key, expires_in=timedelta(hours=1)) == store.path_of(key).as_uri()


async def test_blobs_and_downloads_are_readable_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    src = tmp_path / "src"
    src.write_bytes(b"data")
    await store.put_file("k/f", src)
    await store.get_file("k/f", tmp_path / "out" / "f")
    umask = os.umask(0)
    os.umask(umask)
    for path in (store.path_of("k/f"), tmp_path / "out" / "f"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


async def test_a_stale_temporary_file_does_not_block_a_write(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    src = tmp_path / "src"
    src.write_bytes(b"new")
    target = store.path_of("k/f")
    target.parent.mkdir(parents=True)
    # What a crashed writer with our pid would have left behind, under the next few names.
    for n in range(200):
        (target.parent / f".f.{os.getpid()}-{n}.part").write_bytes(b"junk")
    await store.put_file("k/f", src)
    assert target.read_bytes() == b"new"


async def test_a_directory_removed_behind_the_stores_back_is_made_again(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    src = tmp_path / "src"
    src.write_bytes(b"x")
    await store.put_file("dir/a", src)
    await store.get_file("dir/a", tmp_path / "dest" / "a")
    shutil.rmtree(store.path_of("dir/a").parent)
    shutil.rmtree(tmp_path / "dest")
    await store.put_file("dir/a", src)
    await store.get_file("dir/a", tmp_path / "dest" / "a")
    assert (tmp_path / "dest" / "a").read_bytes() == b"x"


async def test_a_directory_is_not_a_blob(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.path_of("dir/sub").mkdir(parents=True)
    with pytest.raises(errors.NotFoundError):
        await store.get_file("dir/sub", tmp_path / "out")
    assert not (tmp_path / "out").exists()


async def test_a_missing_source_file_is_an_os_error_and_stores_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(FileNotFoundError):
        await store.put_file("k/f", tmp_path / "nope")
    assert await store.list("") == []


async def test_a_large_file_round_trips_exactly(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    src = tmp_path / "big"
    with src.open("wb") as out:
        for _ in range(70):  # 70 MiB: more than one in-kernel copy call
            out.write(os.urandom(1024 * 1024))
    info = await store.put_file("big", src)
    assert info.size == src.stat().st_size
    await store.get_file("big", tmp_path / "back")
    assert filecmp.cmp(src, tmp_path / "back", shallow=False)


async def test_offloaded_calls_return_their_own_results_and_errors() -> None:
    offload = _Offload(runners=2, max_share=4)

    def work(i: int) -> int:
        if i % 7 == 3:
            raise ValueError(f"bad {i}")
        return i * i

    outcomes = await asyncio.gather(
        *(offload.call(functools.partial(work, i)) for i in range(50)), return_exceptions=True
    )
    for i, outcome in enumerate(outcomes):
        if i % 7 == 3:
            assert isinstance(outcome, ValueError) and str(outcome) == f"bad {i}"
        else:
            assert outcome == i * i


async def test_offloaded_calls_run_off_the_event_loop_thread() -> None:
    offload = _Offload()
    loop_thread = threading.get_ident()
    threads = await asyncio.gather(*(offload.call(threading.get_ident) for _ in range(20)))
    assert loop_thread not in threads


async def test_an_offloaded_call_whose_caller_left_does_not_run() -> None:
    offload = _Offload(runners=1, max_share=1)
    gate = threading.Event()
    ran: list[str] = []

    def blocker() -> None:
        gate.wait(timeout=10)
        ran.append("blocker")

    first = asyncio.create_task(offload.call(blocker))
    second = asyncio.create_task(offload.call(lambda: ran.append("abandoned")))
    third = asyncio.create_task(offload.call(lambda: ran.append("third")))
    await asyncio.sleep(0)  # all three queued; the blocker holds the only runner
    second.cancel()
    gate.set()
    await first
    await third
    assert ran == ["blocker", "third"]


async def test_calls_queued_together_share_one_thread_hop() -> None:
    offload = _Offload()
    threads = await asyncio.gather(*(offload.call(threading.get_ident) for _ in range(16)))
    assert len(set(threads)) == 1


async def test_a_long_call_does_not_hold_up_another_callers() -> None:
    offload = _Offload(runners=2)
    gate = threading.Event()
    slow = asyncio.create_task(offload.call(lambda: gate.wait(timeout=10)))
    await asyncio.sleep(0)  # the slow call is on its thread now
    await asyncio.sleep(0)
    assert await asyncio.wait_for(offload.call(lambda: "quick"), timeout=5) == "quick"
    assert not slow.done()
    gate.set()
    assert await slow is True


async def test_calls_after_the_runners_went_idle_still_run() -> None:
    offload = _Offload(runners=1)
    for i in range(50):
        assert await offload.call(functools.partial(int, i)) == i
        await asyncio.sleep(0)


def _copy_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **broken: object) -> bytes:
    for name, replacement in broken.items():
        monkeypatch.setattr(os, name, replacement)
    data = os.urandom(3 * 1024 * 1024 + 11)
    (tmp_path / "src").write_bytes(data)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    try:
        _copy_fd(src, dst, len(data))
    finally:
        os.close(src)
        os.close(dst)
    return data


def _unsupported(*_: object) -> int:
    raise OSError(errno.EXDEV, "not across these")


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({}, id="copy_file_range"),
        pytest.param({"copy_file_range": _unsupported}, id="sendfile"),
        pytest.param({"copy_file_range": _unsupported, "sendfile": _unsupported}, id="read-write"),
    ],
)
def test_copies_fall_back_when_the_kernel_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: dict[str, object]
) -> None:
    data = _copy_with(tmp_path, monkeypatch, **broken)
    assert (tmp_path / "dst").read_bytes() == data


def test_a_copy_that_stops_short_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.copy_file_range
    calls = []

    def one_mib_then_nothing(src: int, dst: int, count: int) -> int:
        calls.append(count)
        return real(src, dst, min(count, 1024 * 1024)) if len(calls) == 1 else 0

    data = _copy_with(tmp_path, monkeypatch, copy_file_range=one_mib_then_nothing)
    assert (tmp_path / "dst").read_bytes() == data


async def test_batches_copy_never_link(tmp_path: Path) -> None:
    """A module must not reach the store through its in/ or out/ files: no shared inodes."""
    store = LocalBlobStore(tmp_path / "blobs")
    src = tmp_path / "out" / "f"
    src.parent.mkdir()
    src.write_bytes(b"data")
    await store.put_files([("k/f", src)])
    dst = tmp_path / "in" / "f"
    await store.get_files([("k/f", dst)])
    blob = store.path_of("k/f")
    assert len({blob.stat().st_ino, src.stat().st_ino, dst.stat().st_ino}) == 3
    assert blob.stat().st_nlink == dst.stat().st_nlink == 1
    dst.write_bytes(b"changed by a module")
    src.write_bytes(b"changed too")
    assert blob.read_bytes() == b"data"


async def test_a_cancelled_batch_stops_and_leaves_no_thread_writing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    src = tmp_path / "src"
    src.write_bytes(os.urandom(64 * 1024))
    items = [(f"c/{i:05d}", src) for i in range(3000)]
    task = asyncio.create_task(store.put_files(items))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    written = sorted(os.listdir(store.path_of("c"))) if store.path_of("c").exists() else []
    await asyncio.sleep(0.05)
    after = sorted(os.listdir(store.path_of("c"))) if store.path_of("c").exists() else []
    assert written == after  # nothing was still being written once the call had returned
    assert len(written) < len(items)
    assert not [name for name in written if name.endswith(".part")]


# --- a full disk is a TransientError, and nothing is left behind ------------------------------


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("batch", [False, True], ids=["put_file", "put_files"])
async def test_a_full_disk_on_put_is_transient_and_leaves_no_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    import ion.core.backends.localfs.blobs as module

    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "src.bin"
    source.write_bytes(b"x" * 10_000)
    monkeypatch.setattr(module, "_copy_fd", _disk_full)
    monkeypatch.setattr(module.os, "copy_file_range", _disk_full)
    with pytest.raises(errors.TransientError) as caught:
        if batch:
            await store.put_files([("a/b.bin", source)])
        else:
            await store.put_file("a/b.bin", source)
    message = str(caught.value)
    assert "disk full at" in message and str(store.root) in message, message
    assert "free space and Ion resumes" in message
    assert isinstance(caught.value.__cause__, OSError)
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []
    monkeypatch.undo()  # space returns
    info = (
        await store.put_files([("a/b.bin", source)])
        if batch
        else [await store.put_file("a/b.bin", source)]
    )
    assert info[0].size == 10_000


async def test_a_read_only_file_system_on_delete_is_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "src.bin"
    source.write_bytes(b"x")
    await store.put_file("k", source)

    def read_only(self: Path, missing_ok: bool = False) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(errors.TransientError, match=r"read-only file system at .*k: remount"):
        await store.delete("k")


async def test_a_missing_blob_is_still_not_found_and_other_errors_pass(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(errors.NotFoundError):
        await store.get_files([("nope", tmp_path / "out")])
    source = tmp_path / "dir"
    source.mkdir()
    with pytest.raises(IsADirectoryError):
        await store.put_file("k", source)
