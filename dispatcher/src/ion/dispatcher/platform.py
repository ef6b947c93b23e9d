"""The embedded platform: backends, dispatchers for a set of modules, root events and flows.

One object owns the bus, blob store and metadata store (from settings URLs) and runs each
module's dispatchers as tasks in one TaskGroup. The pipeline runner (`ion-dispatcher pipeline
run`) and the management server (`ion up`) both drive Ion through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ion.core import attempts, errors, naming
from ion.core.backends import open_blobs, open_bus, open_meta
from ion.core.clock import Clock, SystemClock
from ion.core.config import IonSettings
from ion.core.events import ROOT_PUBLISHER, Event, EventMeta, KeyValuePair, new_root_event
from ion.core.flow import Flow, load_flow
from ion.core.modules import ModuleSpec
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus, OutgoingMessage, PeekedMessage
from ion.core.ports.meta import MetadataStore
from ion.core.records import ModuleRecord
from ion.dispatcher.dispatching import Dispatcher, DispatcherOptions
from ion.dispatcher.executors.local import LocalExecutor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleRuntime:
    """What is running for one module right now."""

    dispatchers_running: int
    jobs_in_flight: int


@dataclass(kw_only=True)
class _Running:
    record: ModuleRecord
    dispatchers: list[Dispatcher]
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def localise(spec: ModuleSpec) -> ModuleSpec:
    """Return the spec with `python` meaning Ion's own interpreter (so modules share its packages)."""
    if spec.command and spec.command[0] in ("python", "python3"):
        return spec.model_copy(update={"command": [sys.executable, *spec.command[1:]]})
    return spec


async def _guarded(dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """Run one dispatcher; if it fails, log it and let the others (and the platform) go on."""
    try:
        await dispatcher.run(stop)
    except Exception:
        log.exception(
            "dispatcher %s stopped on an error; its module runs one short", dispatcher.identity
        )


class EmbeddedPlatform:
    """Ion on one machine: embedded (or configured) backends and in-process dispatchers."""

    def __init__(
        self,
        settings: IonSettings,
        *,
        clock: Clock | None = None,
        working_dir: Path | None = None,
        bus: EventBus | None = None,
        blobs: BlobStore | None = None,
        meta: MetadataStore | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock or SystemClock()
        self._working_dir = working_dir
        self.bus: EventBus = bus or open_bus(settings.bus_url, clock=self._clock)
        self.blobs: BlobStore = blobs or open_blobs(settings.blobs_url)
        self.meta: MetadataStore = meta or open_meta(settings.meta_url)
        self.executor = LocalExecutor(
            settings.jobs_dir,
            bus=self.bus,
            blobs=self.blobs,
            meta=self.meta,
            clock=self._clock,
            container_runtime=settings.dispatcher.container_runtime,
            keep_job_dirs=settings.dispatcher.keep_job_dirs,
            url_lifetime=timedelta(hours=settings.blobs.sas_lifetime_hours),
        )
        self._modules: dict[str, _Running] = {}
        self._stack = AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None

    async def __aenter__(self) -> EmbeddedPlatform:
        self._group = await self._stack.enter_async_context(asyncio.TaskGroup())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every dispatcher gracefully, then close the backends; idempotent."""
        for module_id in list(self._modules):
            await self.stop_module(module_id, remove_subscription=False)
        await self._stack.aclose()
        await self.executor.aclose()
        for backend in (self.bus, self.blobs, self.meta):
            await backend.aclose()

    def _options(self, record: ModuleRecord, index: int) -> DispatcherOptions:
        s = self.settings
        return DispatcherOptions(
            lock_duration=timedelta(seconds=s.bus.lock_duration_seconds),
            receive_wait=timedelta(seconds=s.bus.receive_wait_seconds),
            shutdown_grace=timedelta(seconds=s.dispatcher.shutdown_grace_seconds),
            url_lifetime=timedelta(hours=s.blobs.sas_lifetime_hours),
            identity=f"{socket.gethostname()}-{os.getpid()}-{record.id}-{index}",
            working_dir=self._working_dir,
        )

    async def start_module(self, record: ModuleRecord) -> None:
        """Create the module's subscription and start its dispatchers (instance_count of them)."""
        if self._group is None:
            raise RuntimeError("use EmbeddedPlatform as an async context manager")
        if record.id in self._modules:
            return
        stop = asyncio.Event()
        spec = localise(record.spec)
        dispatchers = [
            Dispatcher(
                spec,
                bus=self.bus,
                meta=self.meta,
                executor=self.executor,
                options=self._options(record, i),
                clock=self._clock,
            )
            for i in range(record.spec.instance_count)
        ]
        await dispatchers[0].ensure_entities()
        running = _Running(record=record, dispatchers=dispatchers, stop=stop)
        for d in dispatchers:
            running.tasks.append(
                self._group.create_task(_guarded(d, stop), name=f"dispatcher-{d.identity}")
            )
        self._modules[record.id] = running
        log.info("started %d dispatcher(s) for module %s", len(dispatchers), record.id)

    async def stop_module(self, module_id: str, *, remove_subscription: bool = True) -> None:
        """Stop the module's dispatchers (gracefully) and, if asked, remove its subscription."""
        running = self._modules.pop(module_id, None)
        if running is None:
            raise errors.NotFoundError(f"module {module_id!r} is not running")
        running.stop.set()
        await asyncio.gather(*running.tasks, return_exceptions=True)
        if remove_subscription:
            d = running.dispatchers[0]
            await self.bus.delete_subscription(d.topic, d.subscription)
        log.info("stopped module %s", module_id)

    def module_status(self, module_id: str) -> ModuleRuntime:
        """Return how many dispatchers run and how many jobs are in flight for a module."""
        running = self._modules.get(module_id)
        if running is None:
            return ModuleRuntime(dispatchers_running=0, jobs_in_flight=0)
        alive = sum(1 for t in running.tasks if not t.done())
        return ModuleRuntime(
            dispatchers_running=alive,
            jobs_in_flight=sum(d.stats.in_flight for d in running.dispatchers),
        )

    def subscribers(self) -> dict[str, list[str]]:
        """Map each event type to the names of the running modules subscribed to it."""
        out: dict[str, list[str]] = {}
        for running in self._modules.values():
            spec = running.record.spec
            out.setdefault(spec.subscribes_to, []).append(spec.name)
        return out

    async def raise_event(
        self,
        event_type: str,
        *,
        data: Mapping[str, str] | None = None,
        files: Sequence[Path] = (),
        correlation_id: str | None = None,
    ) -> Event:
        """Raise a root event: upload its files, record its metadata, publish it.

        Raises:
            errors.NotFoundError: a file to attach does not exist.
        """
        event = new_root_event(event_type, data=data or {}, correlation_id=correlation_id)
        prefix = f"{event.correlation_id}/{event.event_id}/{ROOT_PUBLISHER}"
        names: list[str] = []
        url_pairs: list[KeyValuePair] = []
        for path in files:
            if not path.is_file():
                raise errors.NotFoundError(f"file to attach {str(path)!r} does not exist")
            key = f"{prefix}/{path.name}"
            await self.blobs.put_file(key, path)
            names.append(path.name)
            url_pairs.append(
                KeyValuePair(
                    key=path.name,
                    value=await self.blobs.url_for(
                        key, expires_in=timedelta(hours=self.settings.blobs.sas_lifetime_hours)
                    ),
                )
            )
        await self.meta.upsert_event_meta(
            EventMeta(
                id=event.event_id,
                context=event.context,
                type=event_type,
                files=names,
                data=[*event.data, *url_pairs],
                files_prefix=prefix,
            )
        )
        await self.bus.ensure_topic(event_type)
        await self.bus.publish(
            event_type, [OutgoingMessage(body=event.to_json(), message_id=event.event_id)]
        )
        log.info("raised %s (correlation %s)", event_type, event.correlation_id)
        return event

    async def flow(self, correlation_id: str) -> Flow:
        """Return the flow tree of a correlation id."""
        return await load_flow(self.meta, correlation_id, self.subscribers())

    async def wait_settled(
        self,
        correlation_id: str,
        *,
        timeout: float,
        poll: float = 0.05,
        on_progress: Callable[[Flow], None] | None = None,
    ) -> Flow:
        """Wait until no run of the flow is pending, running or retrying; return the tree.

        Raises:
            errors.TransientError: the flow did not settle within `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            flow = await self.flow(correlation_id)
            if on_progress is not None:
                on_progress(flow)
            if flow.settled:
                return flow
            if loop.time() >= deadline:
                raise errors.TransientError(
                    f"flow {correlation_id} did not settle within {timeout:g}s"
                )
            await asyncio.sleep(poll)

    def _running(self, module_id: str) -> _Running:
        running = self._modules.get(module_id)
        if running is None:
            raise errors.NotFoundError(f"module {module_id!r} is not running")
        return running

    async def dead_letters(self, module_id: str, *, max_messages: int = 100) -> list[PeekedMessage]:
        """Return the module's dead-lettered messages with their reasons."""
        d = self._running(module_id).dispatchers[0]
        return await self.bus.peek(
            d.topic, d.subscription, max_messages=max_messages, dead_letter=True
        )

    async def replay_dead_letter(self, module_id: str, message_id: str) -> None:
        """Send one dead-lettered message back to the module for a fresh round of attempts.

        Raises:
            errors.NotFoundError: no dead letter with that message id.
        """
        running = self._running(module_id)
        d = running.dispatchers[0]
        spec = running.record.spec
        found = None
        held = []
        try:
            while True:
                batch = await self.bus.receive_dead_letters(
                    d.topic, d.subscription, max_messages=50, max_wait=timedelta(milliseconds=200)
                )
                if not batch:
                    break
                for m in batch:
                    if m.message_id == message_id and found is None:
                        found = m
                    else:
                        held.append(m)
        finally:
            for m in held:
                with contextlib.suppress(errors.IonError):
                    await self.bus.abandon(m)
        if found is None:
            raise errors.NotFoundError(f"no dead letter {message_id!r} for module {module_id!r}")
        last = attempts.attempt_of(found.properties)
        replay = attempts.next_attempt_message(
            body=found.body,
            properties=found.properties,
            message_id=attempts.replay_message_id(message_id, last + 1),
            attempt=last + 1,
            max_attempt=last + spec.max_attempts,
            subscription=naming.subscription_name(spec.subscribes_to, spec.name),
        )
        await self.bus.publish(d.topic, [replay])
        await self.bus.complete(found)
