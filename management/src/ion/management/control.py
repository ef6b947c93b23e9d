"""Ion's control plane on one machine: backends, module dispatchers, root events, flows, dead letters.

One object opens the bus, blob store and metadata store from settings (or takes them), runs
modules' dispatchers through the dispatcher member's pool (jobs on the local executor), raises
root events (files streamed straight into the blob store, published with the same function a
commit uses for child events), builds flows from typed documents, and lists and replays dead
letters. `ion up`, `ion-management serve` and `pipeline run` all drive Ion through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from opentelemetry import trace

from ion.core import attempts, errors, identifiers, naming, telemetry
from ion.core.backends import open_blobs, open_bus, open_meta
from ion.core.clock import Clock, SystemClock
from ion.core.config import IonSettings
from ion.core.events import ROOT_PUBLISHER, Event, EventMeta, KeyValuePair, new_root_event
from ion.core.flow import Flow, load_flow
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus, PeekedMessage
from ion.core.ports.meta import MetadataStore
from ion.core.publishing import publish_events
from ion.core.records import ModuleRecord
from ion.dispatcher.dispatching import Dispatcher
from ion.dispatcher.embedded import local_pool
from ion.dispatcher.pool import DispatcherPool, Draining, ModuleRuntime

log = logging.getLogger(__name__)
tracer = trace.get_tracer("ion.management")


@dataclass(frozen=True, slots=True)
class RootFile:
    """A file to attach to a root event: its name (relative, '/'-separated) and its content."""

    name: str
    chunks: AsyncIterator[bytes]

    @classmethod
    def from_path(cls, path: Path, *, name: str | None = None) -> RootFile:
        """Stream a local file.

        Raises:
            errors.NotFoundError: the file does not exist.
        """
        if not path.is_file():
            raise errors.NotFoundError(f"file to attach {str(path)!r} does not exist")
        return cls(name or path.name, _read_chunks(path))


async def _read_chunks(path: Path, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, size):
            yield chunk


class RootEvent:
    """A root event being raised: files streamed into the blob store first, then the event.

    Use as `async with RootEvent(...) as root:`; `await root.attach(name, chunks)` streams a
    file straight into the blob store, `root.data` takes the key/value pairs; on leaving the
    block the event is recorded and published (`root.event`). If the block raises, the files
    stored so far are deleted and nothing is published.
    """

    def __init__(
        self,
        *,
        bus: EventBus,
        blobs: BlobStore,
        meta: MetadataStore,
        url_lifetime: timedelta,
        event_type: str,
        correlation_id: str | None = None,
    ) -> None:
        identifiers.check_event_type(event_type, field="event_type")
        if correlation_id:
            identifiers.check_id(correlation_id, field="correlation_id")
        correlation_id = correlation_id or str(uuid.uuid4())
        self._bus, self._blobs, self._meta = bus, blobs, meta
        self._url_lifetime = url_lifetime
        self.event_type = event_type
        self.correlation_id = correlation_id
        self.event_id = str(uuid.uuid4())
        self.prefix = f"{correlation_id}/{self.event_id}/{ROOT_PUBLISHER}"
        self.data: dict[str, str] = {}
        self.files: list[str] = []
        self._event: Event | None = None

    @property
    def event(self) -> Event:
        """The event, once raised."""
        if self._event is None:
            raise RuntimeError("the root event has not been raised yet")
        return self._event

    async def attach(self, name: str, chunks: AsyncIterator[bytes]) -> None:
        """Stream one file into the blob store under the event's prefix.

        Raises:
            errors.ValidationError: the name breaks a rule, repeats one, or is one too many.
        """
        identifiers.check_file_names([*self.files, name])
        await self._blobs.put_stream(f"{self.prefix}/{name}", chunks)
        self.files.append(name)

    async def __aenter__(self) -> RootEvent:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None:
            await self._discard()
            return
        try:
            self._event = await self._raise()
        except BaseException:
            await self._discard()
            raise

    async def _discard(self) -> None:
        for name in self.files:
            with contextlib.suppress(errors.IonError):
                await self._blobs.delete(f"{self.prefix}/{name}")

    async def _raise(self) -> Event:
        event = new_root_event(
            self.event_type,
            data=self.data,
            correlation_id=self.correlation_id,
            event_id=self.event_id,
        )
        url_pairs = [
            KeyValuePair(
                key=name,
                value=await self._blobs.url_for(
                    f"{self.prefix}/{name}", expires_in=self._url_lifetime
                ),
            )
            for name in self.files
        ]
        await self._meta.upsert_event_meta(
            EventMeta(
                id=event.event_id,
                context=event.context,
                type=event.type,
                files=list(self.files),
                data=[*event.data, *url_pairs],
                files_prefix=self.prefix,
            )
        )
        # The flow's trace starts here (under a management RPC's span when there is one).
        with tracer.start_as_current_span(
            "raise", kind=trace.SpanKind.PRODUCER, attributes=telemetry.event_attributes(event)
        ):
            await publish_events(self._bus, [event])
        log.info("raised %s (correlation %s)", event.type, event.correlation_id)
        return event


async def raise_root_event(
    *,
    bus: EventBus,
    blobs: BlobStore,
    meta: MetadataStore,
    url_lifetime: timedelta,
    event_type: str,
    data: Mapping[str, str] | None = None,
    files: Sequence[Path | RootFile] = (),
    correlation_id: str | None = None,
) -> Event:
    """Raise a root event: stream its files into the blob store, record it, publish it.

    Raises:
        errors.ValidationError: the type, data, correlation id or a file name breaks a rule
            of `ion.core.identifiers` (nothing is stored or published).
        errors.NotFoundError: a local file to attach does not exist.
    """
    identifiers.check_root_request(
        event_type,
        data=data or {},
        correlation_id=correlation_id,
        file_names=[f.name for f in files],
    )
    sources = [f if isinstance(f, RootFile) else RootFile.from_path(f) for f in files]
    root = RootEvent(
        bus=bus,
        blobs=blobs,
        meta=meta,
        url_lifetime=url_lifetime,
        event_type=event_type,
        correlation_id=correlation_id,
    )
    async with root:
        root.data.update(data or {})
        for source in sources:
            await root.attach(source.name, source.chunks)
    return root.event


class ControlPlane:
    """Ion on one machine: backends from settings and every module's dispatchers in a pool."""

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
        self._url_lifetime = timedelta(hours=settings.blobs.sas_lifetime_hours)
        self._stack = AsyncExitStack()
        self._pool: DispatcherPool | None = None

    async def __aenter__(self) -> ControlPlane:
        self._pool = await self._stack.enter_async_context(
            local_pool(
                self.settings,
                bus=self.bus,
                blobs=self.blobs,
                meta=self.meta,
                working_dir=self._working_dir,
                clock=self._clock,
            )
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every dispatcher gracefully, then close the backends; idempotent."""
        await self._stack.aclose()
        self._pool = None
        for backend in (self.bus, self.blobs, self.meta):
            await backend.aclose()

    @property
    def pool(self) -> DispatcherPool:
        """The dispatchers running in this process."""
        if self._pool is None:
            raise RuntimeError("use ControlPlane as an async context manager")
        return self._pool

    # -- modules -------------------------------------------------------------------------

    async def start_module(self, record: ModuleRecord) -> None:
        """Create the module's subscription and start its dispatchers (instance_count of them)."""
        await self.pool.start(record)

    async def stop_module(
        self,
        module_id: str,
        *,
        remove_subscription: bool = True,
        grace: float | None = None,
        on_progress: Callable[[Draining], None] | None = None,
    ) -> int:
        """Stop the module's dispatchers (gracefully) and, if asked, remove its subscription;
        return how many jobs were left running (`DispatcherPool.stop`).

        Raises:
            errors.NotFoundError: the module is not running here.
        """
        return await self.pool.stop(
            module_id, remove_subscription=remove_subscription, grace=grace, on_progress=on_progress
        )

    async def replace_module(self, record: ModuleRecord) -> None:
        """Run a running module with a new spec on the same subscription (queued events kept).

        Raises:
            errors.NotFoundError: the module is not running here.
        """
        await self.pool.replace(record)

    async def cancel_jobs(self, jobs: Sequence[tuple[str, str | None]]) -> int:
        """Cancel jobs by (job id, executor name or None) and remove their folders."""
        return await self.pool.cancel_jobs(jobs)

    async def job_log(self, job_id: str, executor: str | None = None) -> bytes:
        """Return what the log of a job running here holds so far (`ion logs -f`).

        Raises:
            errors.NotFoundError: no such executor here, or it knows no such job.
        """
        return await self.pool.job_log(job_id, executor)

    def module_status(self, module_id: str) -> ModuleRuntime:
        """Return how many dispatchers run and how many jobs are in flight for a module."""
        return self.pool.status(module_id)

    def dispatchers(self, module_id: str) -> list[Dispatcher]:
        """The module's dispatchers in this process (for their counters)."""
        return self.pool.dispatchers(module_id)

    def subscribers(self) -> dict[str, list[str]]:
        """Map each event type to the names of the running modules subscribed to it."""
        return self.pool.subscribers()

    # -- root events ---------------------------------------------------------------------

    def root_event(self, event_type: str, *, correlation_id: str | None = None) -> RootEvent:
        """Begin a root event whose files and data arrive one by one (see `RootEvent`).

        Raises:
            errors.ValidationError: the type or correlation id breaks a rule.
        """
        return RootEvent(
            bus=self.bus,
            blobs=self.blobs,
            meta=self.meta,
            url_lifetime=self._url_lifetime,
            event_type=event_type,
            correlation_id=correlation_id,
        )

    async def raise_event(
        self,
        event_type: str,
        *,
        data: Mapping[str, str] | None = None,
        files: Sequence[Path | RootFile] = (),
        correlation_id: str | None = None,
    ) -> Event:
        """Raise a root event (see `raise_root_event`)."""
        return await raise_root_event(
            bus=self.bus,
            blobs=self.blobs,
            meta=self.meta,
            url_lifetime=self._url_lifetime,
            event_type=event_type,
            data=data,
            files=files,
            correlation_id=correlation_id,
        )

    # -- flows ---------------------------------------------------------------------------

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

    # -- dead letters --------------------------------------------------------------------

    def _entities(self, module_id: str) -> tuple[str, str, ModuleRecord]:
        record = self.pool.record(module_id)
        topic = record.spec.subscribes_to
        return topic, naming.subscription_name(topic, record.spec.name), record

    async def dead_letters(self, module_id: str, *, max_messages: int = 100) -> list[PeekedMessage]:
        """Return the module's dead-lettered messages with their reasons.

        Raises:
            errors.NotFoundError: the module is not running here.
        """
        topic, subscription, _ = self._entities(module_id)
        return await self.bus.peek(topic, subscription, max_messages=max_messages, dead_letter=True)

    async def replay_dead_letter(self, module_id: str, message_id: str) -> None:
        """Send one dead-lettered message back to the module for a fresh round of attempts.

        Raises:
            errors.NotFoundError: the module is not running here, or has no such dead letter.
        """
        topic, subscription, record = self._entities(module_id)
        found = None
        held = []
        try:
            while True:
                batch = await self.bus.receive_dead_letters(
                    topic, subscription, max_messages=50, max_wait=timedelta(milliseconds=200)
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
            max_attempt=last + record.spec.max_attempts,
            subscription=subscription,
        )
        await self.bus.publish(topic, [replay])
        await self.bus.complete(found)
