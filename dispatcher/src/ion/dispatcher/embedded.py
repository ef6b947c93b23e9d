"""A pool of dispatchers over the executor Ion's settings name, wired in one place.

`ion-dispatcher serve` and management's in-process deployer both get their pool here, so the
dispatcher options and the executors are built from settings in one place: the default one
(`dispatcher.executor`: `local`, `kubernetes` or `azurebatch`) and those modules' routes may
name (`dispatcher.routes_to`), by name through `ion.dispatcher.executors.named`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from ion.core.clock import Clock
from ion.core.config import IonSettings
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.executor import BackendRefs
from ion.core.ports.meta import MetadataStore
from ion.dispatcher.dispatching import DispatcherOptions
from ion.dispatcher.executors import named
from ion.dispatcher.executors.local import LocalExecutor
from ion.dispatcher.pool import DispatcherPool


def dispatcher_options(settings: IonSettings, *, working_dir: Path | None) -> DispatcherOptions:
    """Dispatcher behaviour from settings (identity is set per dispatcher by the pool)."""
    return DispatcherOptions(
        lock_duration=timedelta(seconds=settings.bus.lock_duration_seconds),
        receive_wait=timedelta(seconds=settings.bus.receive_wait_seconds),
        shutdown_grace=timedelta(seconds=settings.dispatcher.shutdown_grace_seconds),
        url_lifetime=timedelta(hours=settings.blobs.sas_lifetime_hours),
        working_dir=working_dir,
        backends=BackendRefs(
            bus_url=settings.bus_url, blobs_url=settings.blobs_url, meta_url=settings.meta_url
        ),
    )


def local_executor(
    settings: IonSettings,
    *,
    bus: EventBus,
    blobs: BlobStore,
    meta: MetadataStore,
    clock: Clock | None = None,
) -> LocalExecutor:
    """The local executor, its jobs under `settings.jobs_dir`."""
    return LocalExecutor(
        settings.jobs_dir,
        bus=bus,
        blobs=blobs,
        meta=meta,
        clock=clock,
        container_runtime=settings.dispatcher.container_runtime,
        keep_job_dirs=settings.dispatcher.keep_job_dirs,
        url_lifetime=timedelta(hours=settings.blobs.sas_lifetime_hours),
    )


@asynccontextmanager
async def local_pool(
    settings: IonSettings,
    *,
    bus: EventBus,
    blobs: BlobStore,
    meta: MetadataStore,
    working_dir: Path | None = None,
    clock: Clock | None = None,
    module: str | None = None,
) -> AsyncIterator[DispatcherPool]:
    """A running pool over the settings' executor; stops its dispatchers on exit.

    The backends are the caller's: they stay open.
    """
    executors = await named.open_executors(
        settings, bus=bus, blobs=blobs, meta=meta, module=module, clock=clock
    )
    try:
        async with DispatcherPool(
            bus=bus,
            meta=meta,
            blobs=blobs,
            executors=executors,
            options=dispatcher_options(settings, working_dir=working_dir),
            clock=clock,
        ) as pool:
            yield pool
    finally:
        await executors.aclose()
