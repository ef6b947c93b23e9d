"""The dispatcher pool: starts, stops and reports the dispatchers of many modules in one process.

Every dispatcher of the pool shares the bus, the metadata store and one executor; each module
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
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from ion.core import errors
from ion.core.clock import Clock, SystemClock
from ion.core.modules import ModuleSpec
from ion.core.ports.bus import EventBus
from ion.core.ports.executor import Executor
from ion.core.ports.meta import MetadataStore
from ion.core.records import ModuleRecord
from ion.dispatcher.dispatching import Dispatcher, DispatcherOptions

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


def localise(spec: ModuleSpec) -> ModuleSpec:
    """Return the spec with `python` meaning Ion's own interpreter (so modules share its packages)."""
    if spec.command and spec.command[0] in ("python", "python3"):
        return spec.model_copy(update={"command": [sys.executable, *spec.command[1:]]})
    return spec


async def _guarded(dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """Run one dispatcher; if it fails, log it and let the others go on."""
    try:
        await dispatcher.run(stop)
    except Exception:
        log.exception(
            "dispatcher %s stopped on an error; its module runs one short", dispatcher.identity
        )


class DispatcherPool:
    """The dispatchers of many modules over shared backends and one executor."""

    def __init__(
        self,
        *,
        bus: EventBus,
        meta: MetadataStore,
        executor: Executor,
        options: DispatcherOptions | None = None,
        clock: Clock | None = None,
        identity: Callable[[ModuleRecord, int], str] | None = None,
    ) -> None:
        self._bus, self._meta, self._executor = bus, meta, executor
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
        spec = localise(record.spec)
        dispatchers = [
            Dispatcher(
                spec,
                bus=self._bus,
                meta=self._meta,
                executor=self._executor,
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
