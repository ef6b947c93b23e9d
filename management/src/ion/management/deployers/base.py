"""The Deployer protocol and the runtime status it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ion.core import ModuleRecord, ModuleSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """What runs for one module now."""

    dispatchers_running: int = 0
    jobs_in_flight: int = 0
    last_error: str = ""
    """Why dispatchers are not running, when the deployer knows (a crash, an image pull)."""


class Deployer(Protocol):
    """Starts and stops a module's dispatchers and reports what runs."""

    @property
    def default_provider(self) -> str:
        """The provider a module gets when its request names none."""
        ...

    @property
    def providers(self) -> frozenset[str]:
        """Providers (lowercase) this deployer can run modules on."""
        ...

    async def deploy(self, record: ModuleRecord) -> None:
        """Start the module's dispatchers (idempotent: a running module stays as it is)."""
        ...

    async def undeploy(self, record: ModuleRecord) -> None:
        """Stop the module's dispatchers and remove its subscription; history stays."""
        ...

    async def runtime(self, record: ModuleRecord) -> Runtime:
        """Return how many dispatchers run and how many jobs they hold."""
        ...


@runtime_checkable
class SpecChecker(Protocol):
    """A deployer that can tell, before a module is stored, that it could never run it."""

    def check(self, spec: ModuleSpec, provider: str) -> None:
        """Refuse a spec this deployer cannot run on `provider` (lowercase).

        Raises:
            errors.ValidationError: naming the request field at fault and the rule.
        """
        ...
