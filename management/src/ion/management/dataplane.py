"""What the management server needs from the platform it manages, as typed protocols.

The control plane (`ion.management.control.ControlPlane`) satisfies `Platform`
structurally; a cloud deployment will provide the same operations over its backends. Flows are
`ion.core.flow.Flow`, built from the metadata store by whichever side holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from ion.core import Event, ModuleRecord
from ion.core.flow import Flow
from ion.core.ports import BlobStore, EventBus, MetadataStore
from ion.dispatcher.pool import Draining
from ion.management.control import RootEvent, RootFile


class ModuleRuntimeLike(Protocol):
    """How many dispatchers of a module run, and how many jobs they hold."""

    @property
    def dispatchers_running(self) -> int:
        """Dispatchers of the module that are running now."""
        ...

    @property
    def jobs_in_flight(self) -> int:
        """Jobs those dispatchers are running now."""
        ...


class Platform(Protocol):
    """Backends plus the operations the management server drives."""

    @property
    def bus(self) -> EventBus:
        """The event bus."""
        ...

    @property
    def blobs(self) -> BlobStore:
        """The blob store."""
        ...

    @property
    def meta(self) -> MetadataStore:
        """The metadata store."""
        ...

    async def start_module(self, record: ModuleRecord) -> None:
        """Ensure the module's topic and subscription and start its dispatchers."""
        ...

    async def stop_module(
        self,
        module_id: str,
        *,
        remove_subscription: bool = True,
        grace: float | None = None,
        on_progress: Callable[[Draining], None] | None = None,
    ) -> int:
        """Stop the module's dispatchers (and remove its subscription); in-flight jobs get
        `grace` seconds; return how many were left running."""
        ...

    async def replace_module(self, record: ModuleRecord) -> None:
        """Run a running module with a new spec on the same subscription."""
        ...

    async def cancel_jobs(self, jobs: Sequence[tuple[str, str | None]]) -> int:
        """Cancel jobs by (job id, executor name or None) and remove their folders."""
        ...

    def module_status(self, module_id: str) -> ModuleRuntimeLike:
        """Return what runs for the module now."""
        ...

    def root_event(self, event_type: str, *, correlation_id: str | None = None) -> RootEvent:
        """Begin a root event whose files stream in one by one (`ion.management.control`)."""
        ...

    async def raise_event(
        self,
        event_type: str,
        *,
        data: Mapping[str, str] = ...,
        files: Sequence[Path | RootFile] = ...,
        correlation_id: str | None = None,
    ) -> Event:
        """Raise a root event: upload files, write its eventMeta, publish it."""
        ...

    async def flow(self, correlation_id: str) -> Flow:
        """Return the flow tree of a correlation id."""
        ...

    async def wait_settled(self, correlation_id: str, *, timeout: float) -> Flow:
        """Return the flow once it has settled, or as it is when `timeout` passes."""
        ...

    async def replay_dead_letter(self, module_id: str, message_id: str) -> None:
        """Move a dead-lettered message back onto the module's subscription."""
        ...
