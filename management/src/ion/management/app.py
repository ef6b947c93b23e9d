"""One management process: the platform, the gRPC server and the front API, until told to stop.

`run` owns everything it starts: it opens the platform, restarts the dispatchers of modules
that were live when the process last stopped, serves, and on `stop` reports NOT_SERVING, lets
calls in flight finish within the grace period, stops the front API and closes the platform
(which stops the dispatchers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from ion.core import errors, metrics
from ion.core.config import IonSettings
from ion.management.certs import TlsFiles
from ion.management.console import Console
from ion.management.control import ControlPlane
from ion.management.dataplane import Platform
from ion.management.deployers import Deployer, InProcessDeployer
from ion.management.deployers.routing import ProviderRouter
from ion.management.front_api import start_front_api
from ion.management.registry import ModuleRegistry
from ion.management.server import start_server

log = logging.getLogger(__name__)

PlatformFactory = Callable[[IonSettings], AbstractAsyncContextManager[Platform]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    """Where a running management process listens."""

    host: str
    grpc_port: int
    front_api_port: int
    tls: bool

    @property
    def front_api_url(self) -> str:
        """Base URL of the front API."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.front_api_port}"


def embedded_platform(settings: IonSettings) -> AbstractAsyncContextManager[Platform]:
    """Return the control plane with every module's dispatchers in this process."""
    return ControlPlane(settings)


async def _deployer(
    settings: IonSettings, platform: Platform
) -> tuple[Deployer, list[Callable[[], Awaitable[None]]]]:
    """The deployers of the configured providers, behind one router."""
    wanted = [p.strip().lower() for p in settings.management.providers.split(",") if p.strip()]
    unknown = set(wanted) - {"local", "docker", "kubernetes", "azurebatch"}
    if unknown or not wanted:
        raise errors.ConfigError(
            f"setting ION_MANAGEMENT__PROVIDERS is {settings.management.providers!r}: list some "
            "of local, docker, kubernetes, azurebatch (comma-separated)"
        )
    deployers: dict[str, Deployer] = {}
    closers: list[Callable[[], Awaitable[None]]] = []
    if {"local", "docker"} & set(wanted):
        deployers["inprocess"] = InProcessDeployer(
            platform, container_runtime=settings.dispatcher.container_runtime
        )
    if "kubernetes" in wanted:
        from ion.management.deployers.kubernetes import KubernetesDeployer

        kube = await KubernetesDeployer.from_settings(settings, bus=platform.bus)
        deployers["kubernetes"] = kube
        closers.append(kube.aclose)
    if "azurebatch" in wanted:
        from ion.management.deployers.azurebatch import AzureBatchDeployer

        batch = AzureBatchDeployer(platform, settings)
        deployers["azurebatch"] = batch
        closers.append(batch.aclose)
    default = settings.management.default_provider or wanted[0]
    return ProviderRouter(deployers, default_provider=default), closers


async def run(
    settings: IonSettings,
    *,
    stop: asyncio.Event,
    tls: TlsFiles | None,
    front_api_token: str | None = None,
    platform_factory: PlatformFactory = embedded_platform,
    on_ready: Callable[[Endpoints], None] | None = None,
    shutdown_grace: float = 5.0,
) -> None:
    """Serve the management API and the front API on `settings.management` until `stop` is set,
    and Prometheus `/metrics` on `settings.telemetry.metrics_port` when it is set.

    Raises:
        errors.ConfigError: a certificate is wrong or a port cannot be bound.
    """
    telemetry = settings.telemetry
    served = (
        metrics.serve(telemetry.metrics_host, telemetry.metrics_port)
        if telemetry.metrics_port is not None
        else None
    )
    try:
        await _run(settings, stop, tls, front_api_token, platform_factory, on_ready, shutdown_grace)
    finally:
        if served is not None:
            served.close()


async def _run(
    settings: IonSettings,
    stop: asyncio.Event,
    tls: TlsFiles | None,
    front_api_token: str | None,
    platform_factory: PlatformFactory,
    on_ready: Callable[[Endpoints], None] | None,
    shutdown_grace: float,
) -> None:
    cfg = settings.management
    async with platform_factory(settings) as platform:
        deployer, closers = await _deployer(settings, platform)
        registry = ModuleRegistry(
            platform.meta,
            platform.bus,
            deployer,
            route_executors=settings.dispatcher.route_executors,
        )
        restored = await registry.restore()
        if restored:
            log.info("restarted %d module(s): %s", len(restored), ", ".join(restored))
        server = await start_server(platform, registry, host=cfg.host, port=cfg.port, tls=tls)
        try:
            runner, front_port = await start_front_api(
                platform,
                host=cfg.host,
                port=cfg.front_api_port,
                tls=tls,
                token=front_api_token,
                max_request_bytes=cfg.front_api_max_request_bytes,
                max_file_bytes=cfg.front_api_max_file_bytes,
                mounted={"/ui": Console(platform, registry, token=front_api_token).app()},
            )
        except BaseException:
            await server.stop(0)
            raise
        try:
            if on_ready is not None:
                on_ready(
                    Endpoints(
                        host=cfg.host,
                        grpc_port=server.port,
                        front_api_port=front_port,
                        tls=tls is not None,
                    )
                )
            await stop.wait()
            log.info("stopping: finishing calls in flight (up to %.0fs)", shutdown_grace)
        finally:
            await server.stop(shutdown_grace)
            await runner.cleanup()
            for close in closers:
                await close()
    log.info("stopped")
