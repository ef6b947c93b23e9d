"""The Azure Batch deployer: provider `azurebatch`, a module's dispatchers in this process, its
jobs as Batch tasks.

As with the local provider (`ion up`), the dispatchers run inside the management process; each
module gets its own pool of dispatchers over the platform's backends and an `AzureBatchExecutor`
bound to its own Batch job (`<prefix>-<module>`), so 2018's one-job-per-dispatcher shape holds.
Deleting the module stops its dispatchers, removes its subscription and deletes its Batch job
(with any tasks left in it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from ion.core import ModuleRecord, errors, naming
from ion.core.config import IonSettings
from ion.dispatcher.embedded import dispatcher_options
from ion.dispatcher.executors.azurebatch import AzureBatchExecutor
from ion.dispatcher.executors.named import open_executors
from ion.dispatcher.pool import DispatcherPool, Draining
from ion.management.dataplane import Platform
from ion.management.deployers.base import Runtime

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class _Deployed:
    pool: DispatcherPool
    stack: AsyncExitStack
    executor: AzureBatchExecutor | None


class AzureBatchDeployer:
    """Runs each `azurebatch` module's dispatchers in this process, jobs on Azure Batch."""

    def __init__(self, platform: Platform, settings: IonSettings) -> None:
        self._platform = platform
        self._settings = settings.with_overrides(dispatcher={"executor": "azurebatch"})
        self._modules: dict[str, _Deployed] = {}

    @property
    def default_provider(self) -> str:
        """Modules asked for nothing else run on Batch when this is the server's only provider."""
        return "azurebatch"

    @property
    def providers(self) -> frozenset[str]:
        """Only Azure Batch."""
        return frozenset({"azurebatch"})

    async def deploy(self, record: ModuleRecord) -> None:
        """Start the module's dispatchers over a Batch executor of its own (idempotent).

        Raises:
            errors.ConfigError: the Batch settings are incomplete.
        """
        if record.id in self._modules:
            return
        stack = AsyncExitStack()
        try:
            executors = await open_executors(
                self._settings,
                bus=self._platform.bus,
                blobs=self._platform.blobs,
                meta=self._platform.meta,
                module=record.spec.name,
            )
            stack.push_async_callback(executors.aclose)
            pool = await stack.enter_async_context(
                DispatcherPool(
                    bus=self._platform.bus,
                    meta=self._platform.meta,
                    blobs=self._platform.blobs,
                    executors=executors,
                    options=dispatcher_options(self._settings, working_dir=None),
                )
            )
            await pool.start(record)
        except BaseException:
            await stack.aclose()
            raise
        found = executors.by_name.get("azurebatch")
        self._modules[record.id] = _Deployed(
            pool=pool,
            stack=stack,
            executor=found if isinstance(found, AzureBatchExecutor) else None,
        )
        log.info("deployed module %s on Azure Batch", record.spec.name)

    async def undeploy(self, record: ModuleRecord) -> None:
        """Stop the dispatchers, delete the subscription and the module's Batch job."""
        deployed = self._modules.pop(record.id, None)
        if deployed is None:
            topic = record.spec.subscribes_to
            await self._platform.bus.delete_subscription(
                topic, naming.subscription_name(topic, record.spec.name)
            )
            return
        try:
            try:
                await deployed.pool.stop(record.id, remove_subscription=True)
            except errors.NotFoundError:  # stopped already (a drained delete)
                topic = record.spec.subscribes_to
                await self._platform.bus.delete_subscription(
                    topic, naming.subscription_name(topic, record.spec.name)
                )
            if deployed.executor is not None:
                try:
                    await deployed.executor.delete_batch_job()
                except errors.IonError as err:
                    log.warning("could not delete the Batch job of %s: %s", record.spec.name, err)
        finally:
            await deployed.stack.aclose()

    def drains(self, record: ModuleRecord) -> bool:
        """Every module here: its dispatchers run in this process."""
        return True

    async def update(self, record: ModuleRecord) -> None:
        """Swap the module's dispatchers for ones with the new spec (subscription kept)."""
        deployed = self._modules.get(record.id)
        if deployed is None:
            await self.deploy(record)
            return
        await deployed.pool.replace(record)

    async def stop(
        self,
        record: ModuleRecord,
        *,
        grace: float,
        on_progress: Callable[[Draining], None] | None = None,
    ) -> int:
        """Stop the dispatchers (subscription kept); return the tasks left running."""
        deployed = self._modules.get(record.id)
        if deployed is None:
            return 0
        try:
            return await deployed.pool.stop(
                record.id, remove_subscription=False, grace=grace, on_progress=on_progress
            )
        except errors.NotFoundError:
            return 0

    async def cancel_jobs(
        self, record: ModuleRecord, jobs: Sequence[tuple[str, str | None]]
    ) -> int:
        """Terminate the Batch tasks and delete them."""
        deployed = self._modules.get(record.id)
        if deployed is None:
            return 0
        return await deployed.pool.cancel_jobs(jobs)

    async def runtime(self, record: ModuleRecord) -> Runtime:
        """Return the dispatchers running here and the jobs they hold."""
        deployed = self._modules.get(record.id)
        if deployed is None:
            return Runtime(last_error="not running in this management process")
        status = deployed.pool.status(record.id)
        return Runtime(
            dispatchers_running=status.dispatchers_running, jobs_in_flight=status.jobs_in_flight
        )

    async def aclose(self) -> None:
        """Stop every module's dispatchers (subscriptions and Batch jobs stay)."""
        for module_id in list(self._modules):
            deployed = self._modules.pop(module_id)
            await deployed.stack.aclose()
