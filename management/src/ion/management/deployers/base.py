"""The Deployer protocol and the runtime status it reports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ion.core import ModuleRecord, ModuleSpec
from ion.dispatcher.pool import Draining


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


@runtime_checkable
class Drainer(Protocol):
    """A deployer whose dispatchers it can stop without deleting the module's subscription:
    it updates a module in place, drains it before a delete, and cancels jobs left running."""

    def drains(self, record: ModuleRecord) -> bool:
        """Whether `stop` and `cancel_jobs` work for this module (its provider)."""
        ...

    async def update(self, record: ModuleRecord) -> None:
        """Run the module with `record`'s spec on the same subscription (queued events kept)."""
        ...

    async def stop(
        self,
        record: ModuleRecord,
        *,
        grace: float,
        on_progress: Callable[[Draining], None] | None = None,
    ) -> int:
        """Stop receiving, give in-flight jobs `grace` seconds, keep the subscription; return
        how many jobs were still running (left running, for `cancel_jobs` or adoption)."""
        ...

    async def cancel_jobs(
        self, record: ModuleRecord, jobs: Sequence[tuple[str, str | None]]
    ) -> int:
        """Cancel and delete jobs by (job id, executor name or None); return how many existed."""
        ...
