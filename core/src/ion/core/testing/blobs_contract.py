"""The BlobStore contract: every backend's test module subclasses `BlobStoreContract`.

A subclass provides the `blobs` fixture (a fresh, empty store).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from ion.core import errors
from ion.core.ports.blobs import BlobStore


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


class BlobStoreContract:
    """What every BlobStore promises."""

    async def test_put_and_get_round_trip(self, blobs: BlobStore, tmp_path: Path) -> None:
        src = tmp_path / "src.bin"
        data = os.urandom(3 * 1024 * 1024 + 17)
        src.write_bytes(data)
        info = await blobs.put_file("c1/e1/mod/sub/dir/file.bin", src)
        assert info.size == len(data)
        dst = tmp_path / "out" / "nested" / "file.bin"
        got = await blobs.get_file("c1/e1/mod/sub/dir/file.bin", dst)
        assert dst.read_bytes() == data
        assert got.size == len(data)
        if got.md5:
            assert got.md5 == hashlib.md5(data).hexdigest()

    async def test_empty_file(self, blobs: BlobStore, tmp_path: Path) -> None:
        src = tmp_path / "empty"
        src.write_bytes(b"")
        await blobs.put_file("k/empty", src)
        dst = tmp_path / "empty.out"
        await blobs.get_file("k/empty", dst)
        assert dst.read_bytes() == b""

    async def test_put_replaces(self, blobs: BlobStore, tmp_path: Path) -> None:
        src = tmp_path / "f"
        src.write_bytes(b"one")
        await blobs.put_file("k/f", src)
        src.write_bytes(b"two!")
        await blobs.put_file("k/f", src)
        assert (await blobs.stat("k/f")).size == 4

    async def test_stream_round_trip(self, blobs: BlobStore) -> None:
        data = os.urandom(1024 * 1024 + 5)
        await blobs.put_stream("s/x", _chunks(data, 64 * 1024))
        out = b"".join([c async for c in blobs.get_stream("s/x", chunk_size=100_000)])
        assert out == data

    async def test_get_missing_is_not_found_and_writes_nothing(
        self, blobs: BlobStore, tmp_path: Path
    ) -> None:
        dst = tmp_path / "never"
        with pytest.raises(errors.NotFoundError):
            await blobs.get_file("no/such/blob", dst)
        assert not dst.exists()
        with pytest.raises(errors.NotFoundError):
            await blobs.stat("no/such/blob")
        with pytest.raises(errors.NotFoundError):
            async for _ in blobs.get_stream("no/such/blob"):
                pass

    async def test_list_by_prefix_sorted(self, blobs: BlobStore, tmp_path: Path) -> None:
        src = tmp_path / "f"
        src.write_bytes(b"x")
        for key in ("p/b", "p/a/1", "p/a/2", "q/z", "pp/x"):
            await blobs.put_file(key, src)
        assert [b.key for b in await blobs.list("p/")] == ["p/a/1", "p/a/2", "p/b"]
        assert [b.key for b in await blobs.list("nothing/")] == []

    async def test_delete_is_idempotent(self, blobs: BlobStore, tmp_path: Path) -> None:
        src = tmp_path / "f"
        src.write_bytes(b"x")
        await blobs.put_file("d/x", src)
        await blobs.delete("d/x")
        await blobs.delete("d/x")
        assert await blobs.list("d/") == []

    async def test_url_for_names_the_blob(self, blobs: BlobStore, tmp_path: Path) -> None:
        src = tmp_path / "f"
        src.write_bytes(b"x")
        await blobs.put_file("u/file.txt", src)
        url = await blobs.url_for("u/file.txt", expires_in=timedelta(hours=1))
        assert "file.txt" in url

    async def test_put_files_and_get_files_round_trip_in_item_order(
        self, blobs: BlobStore, tmp_path: Path
    ) -> None:
        contents = {f"d{i % 7}/sub/f{i:03d}.bin": os.urandom(i * 13) for i in range(300)}
        contents["big/one.bin"] = os.urandom(2 * 1024 * 1024 + 3)
        sources = []
        for rel, data in contents.items():
            path = tmp_path / "src" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            sources.append((f"batch/{rel}", path))
        sources.reverse()  # results follow the items, not any sort order
        put = await blobs.put_files(sources)
        assert [(b.key, b.size) for b in put] == [
            (key, len(contents[key.removeprefix("batch/")])) for key, _ in sources
        ]
        targets = [(key, tmp_path / "dst" / "x" / key) for key, _ in sources]
        got = await blobs.get_files(targets)
        assert [(b.key, b.size) for b in got] == [(b.key, b.size) for b in put]
        for key, path in targets:
            assert path.read_bytes() == contents[key.removeprefix("batch/")]
        assert not [p for p in (tmp_path / "dst").rglob("*") if p.name.endswith(".part")]
        assert len(await blobs.list("batch/")) == len(contents)

    async def test_empty_batches_do_nothing(self, blobs: BlobStore) -> None:
        assert await blobs.put_files([]) == []
        assert await blobs.get_files([]) == []

    async def test_put_files_replaces(self, blobs: BlobStore, tmp_path: Path) -> None:
        src = tmp_path / "f"
        src.write_bytes(b"one")
        await blobs.put_files([("r/f", src)])
        src.write_bytes(b"two!")
        await blobs.put_files([("r/f", src)])
        dst = tmp_path / "out"
        dst.write_bytes(b"old content")
        await blobs.get_files([("r/f", dst)])
        assert dst.read_bytes() == b"two!"

    async def test_get_files_missing_blob_names_its_key_and_writes_nothing_half(
        self, blobs: BlobStore, tmp_path: Path
    ) -> None:
        src = tmp_path / "f"
        data = os.urandom(3 * 1024 * 1024)
        src.write_bytes(data)
        await blobs.put_files([(f"m/{i}", src) for i in range(20)])
        items = [(f"m/{i}", tmp_path / "dst" / f"{i}") for i in range(20)]
        items.insert(7, ("m/missing", tmp_path / "dst" / "sub" / "missing"))
        with pytest.raises(errors.NotFoundError) as caught:
            await blobs.get_files(items)
        assert caught.value.key == "m/missing"
        assert not (tmp_path / "dst" / "sub" / "missing").exists()
        for path in (tmp_path / "dst").rglob("*"):
            assert not path.name.endswith(".part")
            if path.is_file():
                assert path.read_bytes() == data  # whatever arrived is whole

    async def test_put_files_with_a_missing_source_leaves_no_partial_blob(
        self, blobs: BlobStore, tmp_path: Path
    ) -> None:
        src = tmp_path / "f"
        data = os.urandom(3 * 1024 * 1024)
        src.write_bytes(data)
        items = [(f"p/{i}", src) for i in range(20)]
        items.insert(5, ("p/gone", tmp_path / "no-such-file"))
        with pytest.raises(OSError):
            await blobs.put_files(items)
        stored = await blobs.list("p/")
        assert "p/gone" not in [b.key for b in stored]
        assert all(b.size == len(data) for b in stored)

    async def test_batches_refuse_a_bad_key_before_writing(
        self, blobs: BlobStore, tmp_path: Path
    ) -> None:
        src = tmp_path / "f"
        src.write_bytes(b"x")
        with pytest.raises(errors.ValidationError):
            await blobs.put_files([("v/ok", src), ("v/../../escape", src)])
        assert await blobs.list("v/") == []
        dst = tmp_path / "dst" / "ok"
        with pytest.raises(errors.ValidationError):
            await blobs.get_files([("v/ok", dst), ("", tmp_path / "dst" / "bad")])
        assert not (tmp_path / "dst").exists()
