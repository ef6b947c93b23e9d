"""The in-process deployer: a module's dispatchers run as tasks of the embedded platform.

Used by `ion up` and `ion-management serve`: one process holds the management server, the
front API and every dispatcher. It runs local commands and (through the platform's container
runtime) images, so it serves the providers `local` and `docker`. Its jobs run on this
machine, so it refuses at create what could never run here (`check`): a working directory that
does not exist, an image with no container runtime, or an image and a command together (the
local executor would run the command and ignore the image).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ion.core import ModuleRecord, ModuleSpec, errors, naming
from ion.dispatcher.executors.local import find_container_runtime
from ion.dispatcher.pool import Draining
from ion.management.dataplane import Platform
from ion.management.deployers.base import Runtime

IMAGE_AND_COMMAND = "ImageAndCommand"
NO_CONTAINER_RUNTIME = "NoContainerRuntime"
NO_SUCH_DIRECTORY = "NoSuchDirectory"


class InProcessDeployer:
    """Deployer over an embedded platform."""

    def __init__(self, platform: Platform, *, container_runtime: str = "") -> None:
        """`container_runtime`: the one the platform's local executors are configured with
        (`ION_DISPATCHER__CONTAINER_RUNTIME`); empty: docker or podman, if on PATH."""
        self._platform = platform
        self._container_runtime = container_runtime

    @property
    def default_provider(self) -> str:
        """Modules run locally unless asked otherwise."""
        return "local"

    @property
    def providers(self) -> frozenset[str]:
        """Local processes, and images through the local container runtime."""
        return frozenset({"local", "docker"})

    def check(self, spec: ModuleSpec, provider: str) -> None:
        """Refuse a module this machine could never run (named by its request field).

        Raises:
            errors.ValidationError: `working_dir` is not a directory here, or `moduleimage` is
                given with a command, or with no container runtime to run it.
        """
        if spec.working_dir and not Path(spec.working_dir).is_dir():
            raise errors.ValidationError(
                f"field 'working_dir': {spec.working_dir!r} is not a directory on the server's"
                " machine; create it, or give --working-dir an existing directory",
                field="working_dir",
                rule=NO_SUCH_DIRECTORY,
            )
        if not spec.image or any(route.executor != "local" for route in spec.routes):
            return  # a route to another executor may run the image there
        if spec.command:
            raise errors.ValidationError(
                f"field 'moduleimage': provider {provider!r} runs either a command (as a local"
                " process) or an image (in docker/podman), not both; drop -m or --command",
                field="moduleimage",
                rule=IMAGE_AND_COMMAND,
            )
        if not find_container_runtime(self._container_runtime):
            raise errors.ValidationError(
                f"field 'moduleimage': provider {provider!r} needs docker or podman on the"
                " server's PATH to run an image, and has neither; install one (or set"
                " ION_DISPATCHER__CONTAINER_RUNTIME), or give the module a --command instead",
                field="moduleimage",
                rule=NO_CONTAINER_RUNTIME,
            )

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

    def drains(self, record: ModuleRecord) -> bool:
        """Every module here: its dispatchers run in this process."""
        return True

    async def update(self, record: ModuleRecord) -> None:
        """Swap the module's dispatchers for ones with the new spec; start it if not running."""
        try:
            await self._platform.replace_module(record)
        except errors.NotFoundError:
            await self._platform.start_module(record)

    async def stop(
        self,
        record: ModuleRecord,
        *,
        grace: float,
        on_progress: Callable[[Draining], None] | None = None,
    ) -> int:
        """Stop the dispatchers (subscription kept); return the jobs left running."""
        try:
            return await self._platform.stop_module(
                record.id, remove_subscription=False, grace=grace, on_progress=on_progress
            )
        except errors.NotFoundError:
            return 0

    async def cancel_jobs(
        self, record: ModuleRecord, jobs: Sequence[tuple[str, str | None]]
    ) -> int:
        """Cancel the jobs on this machine's executors and remove their folders."""
        return await self._platform.cancel_jobs(jobs)

    async def runtime(self, record: ModuleRecord) -> Runtime:
        """Return the platform's view of the module."""
        status = self._platform.module_status(record.id)
        return Runtime(
            dispatchers_running=status.dispatchers_running, jobs_in_flight=status.jobs_in_flight
        )
