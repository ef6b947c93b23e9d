"""A dispatcher pool over backends, with what a test needs to drive flows through it.

`Harness` is the least a test needs around the pool to drive a flow: raise a root event as a
front API does (eventMeta, then the message, through `ion.core.publishing`), read the flow
(`ion.core.flow`) and peek at dead letters. The control plane proper is management's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ion.core import errors, naming
from ion.core.backends import open_blobs, open_bus, open_meta
from ion.core.config import IonSettings
from ion.core.events import Event, EventMeta, new_root_event
from ion.core.flow import Flow, load_flow
from ion.core.ports.bus import PeekedMessage
from ion.core.publishing import publish_events
from ion.core.records import ModuleRecord
from ion.dispatcher.dispatching import Dispatcher
from ion.dispatcher.embedded import local_pool
from ion.dispatcher.pool import DispatcherPool, ModuleRuntime


class Harness:
    """A pool of dispatchers over backends, with what a test needs to drive flows through it."""

    def __init__(self, pool: DispatcherPool, *, bus: Any, blobs: Any, meta: Any) -> None:
        self.pool, self.bus, self.blobs, self.meta = pool, bus, blobs, meta

    async def start_module(self, record: ModuleRecord) -> None:
        await self.pool.start(record)

    async def stop_module(self, module_id: str) -> None:
        await self.pool.stop(module_id)

    def module_status(self, module_id: str) -> ModuleRuntime:
        return self.pool.status(module_id)

    def dispatchers(self, module_id: str) -> list[Dispatcher]:
        return self.pool.dispatchers(module_id)

    async def raise_event(self, event_type: str, *, data: Mapping[str, str] | None = None) -> Event:
        event = new_root_event(event_type, data=data or {})
        await self.meta.upsert_event_meta(
            EventMeta(id=event.event_id, context=event.context, type=event.type, data=event.data)
        )
        await publish_events(self.bus, [event])
        return event

    async def wait_settled(self, correlation_id: str, *, timeout: float) -> Flow:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            flow = await load_flow(self.meta, correlation_id, self.pool.subscribers())
            if flow.settled:
                return flow
            if loop.time() >= deadline:
                raise errors.TransientError(f"flow {correlation_id} did not settle")
            await asyncio.sleep(0.05)

    async def dead_letters(self, module_id: str) -> list[PeekedMessage]:
        spec = self.pool.record(module_id).spec
        sub = naming.subscription_name(spec.subscribes_to, spec.name)
        return await self.bus.peek(spec.subscribes_to, sub, dead_letter=True)


@asynccontextmanager
async def harness(
    settings: IonSettings, tmp_path: Path, *, bus: Any = None, blobs: Any = None, meta: Any = None
) -> AsyncIterator[Harness]:
    """A harness over the given backends (the embedded ones of `settings` where not given)."""
    bus = bus or open_bus(settings.bus_url)
    blobs = blobs or open_blobs(settings.blobs_url)
    meta = meta or open_meta(settings.meta_url)
    try:
        async with local_pool(
            settings, bus=bus, blobs=blobs, meta=meta, working_dir=tmp_path
        ) as pool:
            yield Harness(pool, bus=bus, blobs=blobs, meta=meta)
    finally:
        for backend in (bus, blobs, meta):
            await backend.aclose()
