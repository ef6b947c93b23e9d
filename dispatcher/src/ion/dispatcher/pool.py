"""The dispatcher pool: starts, stops and reports the dispatchers of many modules in one process.

Every dispatcher of the pool shares the bus, the metadata store and the executors (a default
one, and those modules' routes may name, by name); each module
gets `instance_count` competing dispatchers, run as tasks of one TaskGroup. A dispatcher that
fails is logged and never takes the others down. `ion-dispatcher serve` runs a pool of one
module; management's in-process deployer runs a pool of every module (`ion up`, `pipeline run`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from ion.core import errors
from ion.core.clock import Clock, SystemClock
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.executor import Executor
from ion.core.ports.meta import MetadataStore
from ion.core.records import ModuleRecord
from ion.dispatcher.dispatching import Dispatcher, DispatcherOptions
from ion.dispatcher.executors.named import Executors

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleRuntime:
    """What is running for one module right now."""

    dispatchers_running: int = 0
    jobs_in_flight: int = 0


@dataclass(kw_only=True)
class _Running:
    record: ModuleRecord
    dispatchers: list[Dispatcher]
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def _guarded(dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """Run one dispatcher; if it fails, log it and let the others go on."""
    try:
        await dispatcher.run(stop)
    except Exception:
        log.exception(
            "dispatcher %s stopped on an error; its module runs one short", dispatcher.identity
        )


class DispatcherPool:
    """The dispatchers of many modules over shared backends and executors."""

    def __init__(
        self,
        *,
        bus: EventBus,
        meta: MetadataStore,
        executor: Executor | None = None,
        executors: Executors | None = None,
        blobs: BlobStore | None = None,
        options: DispatcherOptions | None = None,
        clock: Clock | None = None,
        identity: Callable[[ModuleRecord, int], str] | None = None,
    ) -> None:
        """Give `executor` (held as `local`) or `executors` (by name, with a default)."""
        if executors is None:
            if executor is None:
                raise TypeError("give the pool an executor or executors")
            executors = Executors(default="local", by_name={"local": executor})
        self._bus, self._meta, self._executors = bus, meta, executors
        self._blobs = blobs
        self._options = options or DispatcherOptions()
        self._clock = clock or SystemClock()
        self._identity = identity or (
            lambda record, i: f"{socket.gethostname()}-{os.getpid()}-{record.id}-{i}"
        )
        self._modules: dict[str, _Running] = {}
        self._stack = AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None

    async def __aenter__(self) -> DispatcherPool:
        self._group = await self._stack.enter_async_context(asyncio.TaskGroup())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every dispatcher gracefully (subscriptions stay); idempotent."""
        for module_id in list(self._modules):
            await self.stop(module_id, remove_subscription=False)
        await self._stack.aclose()

    async def start(self, record: ModuleRecord) -> None:
        """Create the module's subscription and start its dispatchers (instance_count of them)."""
        if self._group is None:
            raise RuntimeError("use DispatcherPool as an async context manager")
        if record.id in self._modules:
            return
        missing = sorted({r.executor for r in record.spec.routes} - set(self._executors.by_name))
        if missing:
            raise errors.ValidationError(
                f"module {record.spec.name!r}: routes name executor {missing[0]!r}, which these"
                f" dispatchers do not have (they have: {', '.join(self._executors.names)});"
                " add it to ION_DISPATCHER__ROUTES_TO or change the route",
                field="routes",
                rule="UnknownExecutor",
            )
        spec = record.spec  # `python` becomes Ion's interpreter where it runs locally (local.py)
        default = self._executors.default
        dispatchers = [
            Dispatcher(
                spec,
                bus=self._bus,
                meta=self._meta,
                executor=self._executors.get(default),
                executors=self._executors.by_name,
                default_executor=default,
                blobs=self._blobs,
                options=dataclasses.replace(self._options, identity=self._identity(record, i)),
                clock=self._clock,
            )
            for i in range(record.spec.instance_count)
        ]
        await dispatchers[0].ensure_entities()
        running = _Running(record=record, dispatchers=dispatchers, stop=asyncio.Event())
        for d in dispatchers:
            running.tasks.append(
                self._group.create_task(_guarded(d, running.stop), name=f"dispatcher-{d.identity}")
            )
        self._modules[record.id] = running
        log.info("started %d dispatcher(s) for module %s", len(dispatchers), record.id)

    async def stop(self, module_id: str, *, remove_subscription: bool = True) -> None:
        """Stop the module's dispatchers (gracefully) and, if asked, remove its subscription.

        Raises:
            errors.NotFoundError: the module is not running in this pool.
        """
        running = self._modules.pop(module_id, None)
        if running is None:
            raise errors.NotFoundError(f"module {module_id!r} is not running")
        running.stop.set()
        await asyncio.gather(*running.tasks, return_exceptions=True)
        if remove_subscription:
            d = running.dispatchers[0]
            await self._bus.delete_subscription(d.topic, d.subscription)
        log.info("stopped module %s", module_id)

    def status(self, module_id: str) -> ModuleRuntime:
        """Return how many dispatchers run and how many jobs are in flight for a module."""
        running = self._modules.get(module_id)
        if running is None:
            return ModuleRuntime()
        return ModuleRuntime(
            dispatchers_running=sum(1 for t in running.tasks if not t.done()),
            jobs_in_flight=sum(d.stats.in_flight for d in running.dispatchers),
        )

    def dispatchers(self, module_id: str) -> list[Dispatcher]:
        """The module's dispatchers (empty if it is not running here)."""
        running = self._modules.get(module_id)
        return list(running.dispatchers) if running else []

    def subscribers(self) -> dict[str, list[str]]:
        """Map each event type to the names of the running modules subscribed to it."""
        out: dict[str, list[str]] = {}
        for running in self._modules.values():
            spec = running.record.spec
            out.setdefault(spec.subscribes_to, []).append(spec.name)
        return out

    def record(self, module_id: str) -> ModuleRecord:
        """The record a running module was started from.

        Raises:
            errors.NotFoundError: the module is not running in this pool.
        """
        running = self._modules.get(module_id)
        if running is None:
            raise errors.NotFoundError(f"module {module_id!r} is not running")
        return running.record
