"""Several deployers behind one: each module goes to the deployer of its provider."""

from __future__ import annotations

from collections.abc import Mapping

from ion.core import ModuleRecord, ModuleSpec, errors
from ion.management.deployers.base import Deployer, Runtime, SpecChecker


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
