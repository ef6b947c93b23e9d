"""Several deployers behind one: each module goes to the deployer of its provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ion.core import ModuleRecord, ModuleSpec, errors
from ion.dispatcher.pool import Draining
from ion.management.deployers.base import Deployer, Drainer, Runtime, SpecChecker


class ProviderRouter:
    """Routes each module to the deployer serving its provider (`local`, `kubernetes`, ...)."""

    def __init__(self, deployers: Mapping[str, Deployer], *, default_provider: str) -> None:
        self._by_provider = {p.lower(): d for d in deployers.values() for p in d.providers}
        self._default = default_provider.lower()
        if self._default not in self._by_provider:
            served = ", ".join(sorted(self._by_provider))
            raise errors.ConfigError(
                f"setting ION_MANAGEMENT__DEFAULT_PROVIDER is {default_provider!r}, which this "
                f"server does not run; use one of: {served}"
            )

    @property
    def default_provider(self) -> str:
        """The configured default provider."""
        return self._default

    @property
    def providers(self) -> frozenset[str]:
        """Every provider of every deployer."""
        return frozenset(self._by_provider)

    def _of(self, record: ModuleRecord) -> Deployer:
        provider = (record.provider or self._default).lower()
        try:
            return self._by_provider[provider]
        except KeyError:
            raise errors.ConfigError(
                f"module {record.spec.name!r} runs on provider {provider!r}, which this server "
                "no longer serves"
            ) from None

    def check(self, spec: ModuleSpec, provider: str) -> None:
        """Let the deployer of `provider` refuse a spec it could never run."""
        deployer = self._by_provider.get(provider.lower())
        if isinstance(deployer, SpecChecker):
            deployer.check(spec, provider.lower())

    async def deploy(self, record: ModuleRecord) -> None:
        """Deploy with the module's provider."""
        await self._of(record).deploy(record)

    async def undeploy(self, record: ModuleRecord) -> None:
        """Undeploy with the module's provider."""
        await self._of(record).undeploy(record)

    async def runtime(self, record: ModuleRecord) -> Runtime:
        """Ask the module's provider."""
        try:
            deployer = self._of(record)
        except errors.ConfigError as err:
            return Runtime(last_error=str(err))
        return await deployer.runtime(record)

    def drains(self, record: ModuleRecord) -> bool:
        """Whether the module's provider can stop its dispatchers and keep its subscription."""
        try:
            deployer = self._of(record)
        except errors.ConfigError:
            return False
        return isinstance(deployer, Drainer) and deployer.drains(record)

    async def update(self, record: ModuleRecord) -> None:
        """Update in place with the module's provider; a provider that cannot drains nothing
        and applies the new spec over the running one (`deploy` is create-or-update there)."""
        deployer = self._of(record)
        if isinstance(deployer, Drainer):
            await deployer.update(record)
        else:
            await deployer.deploy(record)

    async def stop(
        self,
        record: ModuleRecord,
        *,
        grace: float,
        on_progress: Callable[[Draining], None] | None = None,
    ) -> int:
        """Stop with the module's provider if it can; else nothing stops here (0)."""
        deployer = self._of(record)
        if isinstance(deployer, Drainer):
            return await deployer.stop(record, grace=grace, on_progress=on_progress)
        return 0

    async def cancel_jobs(
        self, record: ModuleRecord, jobs: Sequence[tuple[str, str | None]]
    ) -> int:
        """Cancel with the module's provider if it can; else its undeploy removes the jobs."""
        deployer = self._of(record)
        if isinstance(deployer, Drainer):
            return await deployer.cancel_jobs(record, jobs)
        return 0
