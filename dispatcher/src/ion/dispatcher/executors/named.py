"""Executors by name: what a module's routes name, and how a dispatcher process builds each.

A dispatcher process holds its default executor (`ION_DISPATCHER__EXECUTOR`) and the further
ones routes may name (`ION_DISPATCHER__ROUTES_TO`, a comma list), each built once from settings
by the factory registered under its name. `local`, `kubernetes` and `azurebatch` are built in
(the last two import their SDKs only when configured); `register_executor` adds another name,
e.g. a second local executor under another name in a test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from ion.core import errors
from ion.core.clock import Clock
from ion.core.config import IonSettings
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.executor import Executor
from ion.core.ports.meta import MetadataStore


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorContext:
    """What a factory builds an executor from."""

    name: str
    settings: IonSettings
    bus: EventBus
    blobs: BlobStore
    meta: MetadataStore
    module: str | None = None
    """The one module this process dispatches, if any."""
    clock: Clock | None = None


ExecutorFactory = Callable[[ExecutorContext], Awaitable[Executor]]
"""Builds the executor of one name (awaited once per dispatcher process)."""


async def _local(ctx: ExecutorContext) -> Executor:
    from ion.dispatcher.executors.local import LocalExecutor

    settings = ctx.settings
    return LocalExecutor(
        settings.jobs_dir,
        bus=ctx.bus,
        blobs=ctx.blobs,
        meta=ctx.meta,
        clock=ctx.clock,
        container_runtime=settings.dispatcher.container_runtime,
        keep_job_dirs=settings.dispatcher.keep_job_dirs,
        url_lifetime=timedelta(hours=settings.blobs.sas_lifetime_hours),
    )


async def _kubernetes(ctx: ExecutorContext) -> Executor:
    from ion.dispatcher.executors.kubernetes import KubernetesExecutor

    return await KubernetesExecutor.from_settings(
        ctx.settings,
        blobs=ctx.blobs,
        meta=ctx.meta,
        bus=ctx.bus,
        module=ctx.module,
        clock=ctx.clock,
    )


async def _azurebatch(ctx: ExecutorContext) -> Executor:
    from ion.dispatcher.executors.azurebatch import AzureBatchExecutor

    made: Executor = AzureBatchExecutor.from_settings(
        ctx.settings,
        blobs=ctx.blobs,
        meta=ctx.meta,
        bus=ctx.bus,
        module=ctx.module,
        clock=ctx.clock,
    )
    return made


_FACTORIES: dict[str, ExecutorFactory] = {
    "local": _local,
    "kubernetes": _kubernetes,
    "azurebatch": _azurebatch,
}


def register_executor(name: str, factory: ExecutorFactory) -> None:
    """Make `name` an executor routes may name (replacing a factory of that name)."""
    _FACTORIES[name.strip().lower()] = factory


def unregister_executor(name: str) -> None:
    """Forget a registered name (built-in names come back as they were only by re-registering)."""
    _FACTORIES.pop(name.strip().lower(), None)


def known_executors() -> list[str]:
    """Every name a factory is registered for, sorted."""
    return sorted(_FACTORIES)


@dataclass(kw_only=True)
class Executors:
    """The executors one dispatcher process holds, by name; `default` runs unrouted jobs."""

    default: str
    by_name: Mapping[str, Executor] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The names held, sorted."""
        return sorted(self.by_name)

    def get(self, name: str) -> Executor:
        """The executor of `name`.

        Raises:
            errors.NotFoundError: this process holds no executor of that name.
        """
        try:
            return self.by_name[name]
        except KeyError:
            raise errors.NotFoundError(
                f"executor {name!r} is not configured in this dispatcher (it has:"
                f" {', '.join(self.names)}); add it to ION_DISPATCHER__ROUTES_TO",
                key=name,
            ) from None

    async def aclose(self) -> None:
        """Close every executor that can be closed; idempotent."""
        for executor in self.by_name.values():
            closer = getattr(executor, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()


async def open_executors(
    settings: IonSettings,
    *,
    bus: EventBus,
    blobs: BlobStore,
    meta: MetadataStore,
    module: str | None = None,
    clock: Clock | None = None,
) -> Executors:
    """Build the default executor and every one `settings.dispatcher.routes_to` names.

    Raises:
        errors.ConfigError: a name has no factory, or an executor cannot be built.
    """
    names = settings.dispatcher.executor_names
    unknown = [n for n in names if n not in _FACTORIES]
    if unknown:
        raise errors.ConfigError(
            f"setting ION_DISPATCHER__EXECUTOR / ION_DISPATCHER__ROUTES_TO names {unknown[0]!r}:"
            f" use one of {', '.join(known_executors())}"
        )
    held = Executors(default=names[0], by_name={})
    built: dict[str, Executor] = {}
    try:
        for name in names:
            ctx = ExecutorContext(
                name=name,
                settings=settings,
                bus=bus,
                blobs=blobs,
                meta=meta,
                module=module,
                clock=clock,
            )
            built[name] = await _FACTORIES[name](ctx)
    except BaseException:
        await Executors(default=names[0], by_name=built).aclose()
        raise
    held.by_name = built
    return held
