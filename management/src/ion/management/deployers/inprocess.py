"""The in-process deployer: a module's dispatchers run as tasks of the embedded platform.

Used by `ion up` and `ion-management serve`: one process holds the management server, the
front API and every dispatcher. It runs local commands and (through the platform's container
runtime) images, so it serves the providers `local` and `docker`.
"""

from __future__ import annotations

from ion.core import ModuleRecord, errors, naming
from ion.management.dataplane import Platform
from ion.management.deployers.base import Runtime


class InProcessDeployer:
    """Deployer over an embedded platform."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    @property
    def default_provider(self) -> str:
        """Modules run locally unless asked otherwise."""
        return "local"

    @property
    def providers(self) -> frozenset[str]:
        """Local processes, and images through the local container runtime."""
        return frozenset({"local", "docker"})

    async def deploy(self, record: ModuleRecord) -> None:
        """Start `record.spec.instance_count` dispatchers in this process."""
        await self._platform.start_module(record)

    async def undeploy(self, record: ModuleRecord) -> None:
        """Stop the dispatchers and delete the module's subscription."""
        try:
            await self._platform.stop_module(record.id, remove_subscription=True)
        except errors.NotFoundError:
            # Not running here (it failed to start, or the process restarted without it):
            # the subscription may still exist.
            topic = record.spec.subscribes_to
            await self._platform.bus.delete_subscription(
                topic, naming.subscription_name(topic, record.spec.name)
            )

    async def runtime(self, record: ModuleRecord) -> Runtime:
        """Return the platform's view of the module."""
        status = self._platform.module_status(record.id)
        return Runtime(
            dispatchers_running=status.dispatchers_running, jobs_in_flight=status.jobs_in_flight
        )
