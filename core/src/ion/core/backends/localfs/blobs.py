"""The embedded BlobStore: blobs are files under a root directory, written atomically.

A write goes to a temporary file beside its target and is renamed into place, so a reader sees
the old blob or the new one. Copies stream in chunks (and use the kernel's copy where it can),
so a large file is never held in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ion.core import errors
from ion.core.ports.blobs import BlobInfo

_CHUNK = 1024 * 1024


class LocalBlobStore:
    """BlobStore on a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    async def __aenter__(self) -> LocalBlobStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def path_of(self, key: str) -> Path:
        """Return the file that holds `key`.

        Raises:
            errors.ValidationError: the key is empty or would leave the root.
        """
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts) or "\\" in key or "\0" in key:
            raise errors.ValidationError(
                f"blob key {key!r} is not a plain '/'-separated relative key",
                field="key",
                rule="key",
            )
        return self.root.joinpath(*parts)

    def _info(self, key: str, path: Path) -> BlobInfo:
        st = path.stat()
        return BlobInfo(
            key=key, size=st.st_size, modified_at=datetime.fromtimestamp(st.st_mtime, UTC)
        )

    def _put_file(self, key: str, source: Path) -> BlobInfo:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._info(key, target)

    async def put_file(self, key: str, source: Path) -> BlobInfo:
        """Copy a local file into the store under `key`, atomically."""
        return await asyncio.to_thread(self._put_file, key, source)

    def _get_file(self, key: str, destination: Path) -> BlobInfo:
        source = self.path_of(key)
        if not source.is_file():
            raise errors.NotFoundError(f"blob {key!r} does not exist in {self.root}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
        )
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
            os.replace(tmp, destination)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._info(key, source)

    async def get_file(self, key: str, destination: Path) -> BlobInfo:
        """Copy the blob to a local file, atomically; raise NotFoundError if missing."""
        return await asyncio.to_thread(self._get_file, key, destination)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> BlobInfo:
        """Write a stream of chunks to `key`, atomically."""
        target = self.path_of(key)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        info = self._info(key, target)
        return BlobInfo(
            key=key, size=info.size, md5=digest.hexdigest(), modified_at=info.modified_at
        )

    async def get_stream(
        self, key: str, *, chunk_size: int = 4 * 1024 * 1024
    ) -> AsyncIterator[bytes]:
        """Yield the blob in chunks; raise NotFoundError if missing."""
        source = self.path_of(key)
        try:
            handle = await asyncio.to_thread(source.open, "rb")
        except (FileNotFoundError, IsADirectoryError) as err:
            raise errors.NotFoundError(f"blob {key!r} does not exist in {self.root}") from err
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def stat(self, key: str) -> BlobInfo:
        """Return the blob's size and time; raise NotFoundError if missing."""
        path = self.path_of(key)
        try:
            return self._info(key, path)
        except FileNotFoundError as err:
            raise errors.NotFoundError(f"blob {key!r} does not exist in {self.root}") from err

    def _list(self, prefix: str) -> list[BlobInfo]:
        # Walk only the deepest directory the prefix names, then filter by the full prefix.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*[p for p in head.split("/") if p]) if head else self.root
        if not start.is_dir():
            return []
        found: list[BlobInfo] = []
        for dirpath, _, filenames in os.walk(start):
            for name in filenames:
                if name.endswith(".part") and name.startswith("."):
                    continue
                path = Path(dirpath, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(self._info(key, path))
        return sorted(found, key=lambda b: b.key)

    async def list(self, prefix: str = "") -> list[BlobInfo]:
        """Return blobs whose keys start with `prefix`, sorted by key."""
        return await asyncio.to_thread(self._list, prefix)

    async def delete(self, key: str) -> None:
        """Delete a blob; succeeds if it is already gone."""
        await asyncio.to_thread(self.path_of(key).unlink, missing_ok=True)

    async def url_for(self, key: str, *, expires_in: timedelta) -> str:
        """Return a file:// URL of the blob (local files do not expire)."""
        return self.path_of(key).as_uri()

    async def aclose(self) -> None:
        """Nothing to release."""
