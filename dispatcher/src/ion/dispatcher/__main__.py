"""`ion-dispatcher serve --spec module.yaml`: run one module's dispatchers until SIGTERM.

Graceful on SIGTERM and Ctrl-C: stop receiving, let jobs finish within the grace period
(`ION_DISPATCHER__SHUTDOWN_GRACE_SECONDS`), leave unstarted messages on the bus, exit 0. Jobs
run where `ION_DISPATCHER__EXECUTOR` says: on this machine (`local`, the default) or as
Kubernetes Jobs (`kubernetes`); several processes may serve one module and compete for its
events. `--health-port` serves `/healthz` and `/readyz` for a Deployment's probes, and `/metrics`;
`ION_TELEMETRY__METRICS_PORT` serves `/metrics` alone on its own port. Backends come from Ion's settings (`ION_BUS__URL`, `ION_BLOBS__URL`,
`ION_META__URL`); whole pipelines run with `ion-management pipeline run`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click
import yaml

from ion.core import entrypoint, errors, metrics
from ion.core.backends import open_blobs, open_bus, open_meta
from ion.core.modules import ModuleSpec
from ion.core.records import ModuleRecord
from ion.dispatcher.embedded import local_pool
from ion.dispatcher.health import HealthServer

PROGRAM = "ion-dispatcher"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="ION_HOME", help="Ion's home directory (default ~/.ion).")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR [INFO].")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="[text]")
@click.pass_context
def main(
    ctx: click.Context, home: str | None, log_level: str | None, log_format: str | None
) -> None:
    """Ion dispatcher: runs jobs of modules when their events arrive."""
    ctx.obj = (home, log_level, log_format)


@main.command()
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="YAML file with one module spec (relative commands resolve beside it).",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=None,
    envvar="ION_DISPATCHER__HEALTH_PORT",
    help="Serve /healthz and /readyz on this port (all interfaces); off by default.",
)
@click.pass_obj
def serve(
    obj: tuple[str | None, str | None, str | None], spec_path: Path, health_port: int | None
) -> None:
    """Run one module's dispatchers until SIGTERM or Ctrl-C."""
    home, log_level, log_format = obj
    try:
        settings = entrypoint.start(PROGRAM, home=home, log_level=log_level, log_format=log_format)
        spec = ModuleSpec.parse(yaml.safe_load(spec_path.read_text()))
    except (errors.IonError, OSError, yaml.YAMLError) as err:
        entrypoint.fail(
            PROGRAM,
            err
            if isinstance(err, errors.IonError)
            else errors.ConfigError(f"cannot read the module spec {str(spec_path)!r}: {err}"),
        )

    async def go(stop: asyncio.Event) -> None:
        telemetry = settings.telemetry
        served = (
            metrics.serve(telemetry.metrics_host, telemetry.metrics_port)
            if telemetry.metrics_port is not None
            else None
        )
        try:
            await serve_module(stop)
        finally:
            if served is not None:
                served.close()

    async def serve_module(stop: asyncio.Event) -> None:
        bus, blobs, meta = (
            open_bus(settings.bus_url),
            open_blobs(settings.blobs_url),
            open_meta(settings.meta_url),
        )
        try:
            async with local_pool(
                settings,
                bus=bus,
                blobs=blobs,
                meta=meta,
                working_dir=spec_path.resolve().parent,
                module=spec.name,
            ) as pool:
                started = asyncio.Event()
                health = (
                    HealthServer(host="0.0.0.0", port=health_port, ready=started.is_set)
                    if health_port is not None
                    else None
                )
                if health is not None:
                    await health.start()
                try:
                    await pool.start(
                        ModuleRecord(id=spec.name, spec=spec, created_at=datetime.now(UTC))
                    )
                    started.set()
                    await stop.wait()
                finally:
                    if health is not None:
                        await health.aclose()
        finally:
            for backend in (bus, blobs, meta):
                await backend.aclose()

    try:
        entrypoint.run_until_signal(go)
    except errors.IonError as err:
        entrypoint.fail(PROGRAM, err)


if __name__ == "__main__":
    main()
