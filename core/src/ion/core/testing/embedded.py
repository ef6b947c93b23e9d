"""The three embedded backends under one directory, for tests and benchmarks.

`EmbeddedBackends.open(root)` gives the SQLite bus, the filesystem blob store and the SQLite
metadata store, plus the `ION_*` variables that point a subprocess (`ion-handler`,
`ion-dispatcher`) at the very same files, and a watcher subscription to see what was published.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ion.core.backends.localfs.blobs import LocalBlobStore
from ion.core.backends.sqlite.bus import SqliteEventBus
from ion.core.backends.sqlite.meta import SqliteMetadataStore
from ion.core.ports.bus import PeekedMessage, SubscriptionOptions

WATCHER = "watcher"
"""The subscription `watch` creates, so published events stay visible to `published`."""


@dataclass(kw_only=True)
class EmbeddedBackends:
    """A bus, blob store and metadata store in files under `root`."""

    root: Path
    bus: SqliteEventBus
    blobs: LocalBlobStore
    meta: SqliteMetadataStore

    @classmethod
    def open(cls, root: Path) -> EmbeddedBackends:
        """Return the backends under `root` (created on first use)."""
        return cls(
            root=root,
            bus=SqliteEventBus(root / "bus.db"),
            blobs=LocalBlobStore(root / "blobs"),
            meta=SqliteMetadataStore(root / "meta.db"),
        )

    @property
    def env(self) -> dict[str, str]:
        """`ION_*` variables pointing a subprocess at these backends."""
        return {
            "ION_HOME": str(self.root / "home"),
            "ION_BUS__URL": f"sqlite:///{self.root / 'bus.db'}",
            "ION_BLOBS__URL": (self.root / "blobs").as_uri(),
            "ION_META__URL": f"sqlite:///{self.root / 'meta.db'}",
        }

    async def watch(self, *topics: str) -> None:
        """Subscribe the watcher to each topic (creating it)."""
        for topic in topics:
            await self.bus.ensure_subscription(topic, WATCHER, SubscriptionOptions())

    async def published(self, topic: str) -> list[PeekedMessage]:
        """Every message the watcher holds on a topic, oldest first."""
        return await self.bus.peek(topic, WATCHER, max_messages=100_000)

    async def blob_keys(self, prefix: str = "") -> list[str]:
        """Every blob key under a prefix, sorted."""
        return [b.key for b in await self.blobs.list(prefix)]

    async def aclose(self) -> None:
        """Close all three; idempotent."""
        for backend in (self.bus, self.blobs, self.meta):
            await backend.aclose()

    async def __aenter__(self) -> EmbeddedBackends:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
