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
