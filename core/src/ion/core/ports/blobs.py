"""The BlobStore port: files under '/'-separated keys, streamed, never whole in memory.

Backends: the local filesystem (embedded) and Azure Blob Storage. Each passes
`ion.core.testing.BlobStoreContract`. Writes are atomic: a reader sees the old blob or the new
one, never a part. `put_files`/`get_files` move a whole tree in one call, so a backend can batch
the per-file overhead away (thousands of small files).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobInfo:
    """What a store knows about one blob."""

    key: str
    size: int
    md5: str = ""
    """Hex MD5 of the content where the backend records it."""
    modified_at: datetime | None = None


class BlobStore(Protocol):
    """Put, get, list and delete blobs by key."""

    async def put_file(self, key: str, source: Path) -> BlobInfo:
        """Upload a local file to `key`, replacing any blob there."""
        ...

    async def get_file(self, key: str, destination: Path) -> BlobInfo:
        """Download `key` to a local file (parents created; written atomically).

        Raises:
            errors.NotFoundError: no blob has that key.
        """
        ...

    async def put_files(self, items: Sequence[tuple[str, Path]]) -> list[BlobInfo]:
        """Upload many local files, `(key, source)` each, as `put_file` would one by one.

        Each blob is written atomically; the results come in item order. On failure the first
        error is raised once no transfer of the batch is running any more: blobs already written
        stay (whole), none is half-written, the remaining ones may not be written.

        Raises:
            errors.ValidationError: a key is invalid (checked before anything is written).
        """
        ...

    async def get_files(self, items: Sequence[tuple[str, Path]]) -> list[BlobInfo]:
        """Download many blobs, `(key, destination)` each, as `get_file` would one by one.

        Each file is written atomically (parents created); the results come in item order. On
        failure the first error is raised once no transfer of the batch is running any more:
        files already written stay (whole), none is half-written, no temporary file is left.

        Raises:
            errors.ValidationError: a key is invalid (checked before anything is written).
            errors.NotFoundError: a blob is missing; its `key` attribute names it, and nothing
                is left at its destination.
        """
        ...

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> BlobInfo:
        """Upload a stream of chunks to `key`."""
        ...

    def get_stream(self, key: str, *, chunk_size: int = 4 * 1024 * 1024) -> AsyncIterator[bytes]:
        """Yield the blob's content in chunks; raise NotFoundError on first iteration if missing."""
        ...

    async def stat(self, key: str) -> BlobInfo:
        """Return a blob's info; raise NotFoundError if missing."""
        ...

    async def list(self, prefix: str = "") -> list[BlobInfo]:
        """Return the blobs whose keys start with `prefix`, sorted by key (empty if none)."""
        ...

    async def delete(self, key: str) -> None:
        """Delete a blob; succeeds if it is already gone."""
        ...

    async def url_for(self, key: str, *, expires_in: timedelta) -> str:
        """Return a read-only URL for the blob, valid for `expires_in` where the backend can."""
        ...

    async def aclose(self) -> None:
        """Release connections; idempotent."""
        ...
