"""The dispatcher pool: starts, stops and reports the dispatchers of many modules in one process.

Every dispatcher of the pool shares the bus, the metadata store and the executors (a default
one, and those modules' routes may name, by name); each module
gets `instance_count` competing dispatchers, run as tasks of one TaskGroup. A dispatcher that
fails is logged and never takes the others down. `ion-dispatcher serve` runs a pool of one
module; management's in-process deployer runs a pool of every module (`ion up`, `pipeline run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Draining:
    """Progress of a module's dispatchers stopping: jobs still in flight, seconds waited."""

    module_id: str
    jobs_in_flight: int
    waited: float
    timeout: float


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


async def _finish(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for retired dispatchers (of a replaced module) to finish their jobs."""
    await asyncio.gather(*tasks, return_exceptions=True)


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

    async def stop(
        self,
        module_id: str,
        *,
        remove_subscription: bool = True,
        grace: float | None = None,
        on_progress: Callable[[Draining], None] | None = None,
    ) -> int:
        """Stop receiving for the module, let its in-flight jobs finish, and, if asked, remove
        its subscription; return how many jobs were still running when the wait ended.

        `grace`: seconds in-flight jobs get (None: the dispatchers' `shutdown_grace`; 0: none).
        Jobs still running then are left running, their messages to return to the bus (a
        later dispatcher adopts them, or the caller cancels them). `on_progress` is called
        about once a second while jobs are in flight.

        Raises:
            errors.NotFoundError: the module is not running in this pool.
        """
        running = self._modules.pop(module_id, None)
        if running is None:
            raise errors.NotFoundError(f"module {module_id!r} is not running")
        if grace is not None:
            for d in running.dispatchers:
                d.shutdown_grace = timedelta(seconds=max(0.0, grace))
        limit = running.dispatchers[0].shutdown_grace.total_seconds()
        running.stop.set()
        started = time.monotonic()
        pending = {t for t in running.tasks if not t.done()}
        while pending:
            _, pending = await asyncio.wait(pending, timeout=1.0)
            in_flight = sum(d.stats.in_flight for d in running.dispatchers)
            if pending and on_progress is not None and in_flight:
                on_progress(
                    Draining(
                        module_id=module_id,
                        jobs_in_flight=in_flight,
                        waited=time.monotonic() - started,
                        timeout=limit,
                    )
                )
        await asyncio.gather(*running.tasks, return_exceptions=True)
        if remove_subscription:
            d = running.dispatchers[0]
            await self._bus.delete_subscription(d.topic, d.subscription)
        left = sum(d.stats.left_running for d in running.dispatchers)
        log.info("stopped module %s (%d job(s) left running)", module_id, left)
        return left

    async def replace(self, record: ModuleRecord) -> None:
        """Run the module with a new record (spec) on the same subscription, losing nothing.

        The new dispatchers start receiving first; the old ones then stop receiving and finish
        their in-flight jobs in the background (up to their shutdown grace; a job still
        running then is adopted by a new dispatcher when its message returns).

        Raises:
            errors.NotFoundError: the module is not running in this pool.
            errors.ValidationError: the new record's routes name an executor the pool lacks.
        """
        old = self._modules.pop(record.id, None)
        if old is None:
            raise errors.NotFoundError(f"module {record.id!r} is not running")
        try:
            await self.start(record)
        except BaseException:
            self._modules[record.id] = old
            raise
        old.stop.set()
        if self._group is not None:
            self._group.create_task(
                _finish(old.tasks), name=f"retire-{record.id}-{len(old.dispatchers)}"
            )

    async def cancel_jobs(self, jobs: Sequence[tuple[str, str | None]]) -> int:
        """Cancel jobs by (job id, executor name or None for the default), wait briefly for
        each to end, and delete it (its folder and resources); return how many were known.

        Call after `stop` left them running: nothing records their outcome but the caller.
        """
        known = 0
        for job_id, executor_name in jobs:
            try:
                executor = self._executors.get(executor_name or self._executors.default)
            except errors.NotFoundError:
                continue
            try:
                await executor.cancel(job_id)
            except errors.NotFoundError:
                continue
            except errors.IonError as err:
                log.warning("could not cancel job %s: %s", job_id, err)
            known += 1
            ended = asyncio.ensure_future(executor.wait(job_id))
            await asyncio.wait({ended}, timeout=5.0)
            if ended.done():
                if not ended.cancelled():  # a driver cancelled with its dispatcher ends so
                    with contextlib.suppress(Exception):
                        ended.result()
            else:
                log.warning("job %s did not end within 5s of its cancel", job_id)
            with contextlib.suppress(errors.IonError):
                await executor.delete(job_id)
        return known

    async def job_log(self, job_id: str, executor_name: str | None = None) -> bytes:
        """Return what a job's log holds so far, from the executor that runs it (`None`: the
        default one), for `ion logs -f`.

        Raises:
            errors.NotFoundError: no such executor here, or it knows no such job.
        """
        executor = self._executors.get(executor_name or self._executors.default)
        return await executor.logs(job_id)

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
