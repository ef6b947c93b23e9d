"""`ion-dispatcher`: run one module's dispatcher, or a whole pipeline file locally.

`ion-dispatcher serve --spec module.yaml` runs the dispatcher of one module until SIGTERM
(graceful: stop receiving, let jobs finish within the grace period, exit 0).
`ion-dispatcher pipeline run pipeline.yaml` starts every module of a pipeline on the embedded
backends, raises the root event, waits for the flow to settle and prints it as a tree.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import click
import yaml
from rich.console import Console

from ion.core import errors, logs, telemetry
from ion.core.config import IonSettings, load_settings
from ion.core.flow import Flow
from ion.core.flowtree import print_flow
from ion.core.modules import ModuleSpec, PipelineSpec
from ion.core.records import ModuleRecord, RunStatus
from ion.dispatcher.pipeline import run_pipeline
from ion.dispatcher.platform import EmbeddedPlatform

err_console = Console(stderr=True)


def _fail(err: errors.IonError) -> None:
    err_console.print(f"[bold red]error:[/] {err}")
    sys.exit(1)


def _settings(home: str | None, log_level: str, log_format: str) -> IonSettings:
    settings = load_settings()
    if home:
        settings = settings.model_copy(update={"home": Path(home).expanduser().absolute()})
    logs.configure(level=log_level, fmt=log_format)
    telemetry.configure_tracing(settings.telemetry.traces, service_name="ion-dispatcher")
    return settings


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


@click.group()
@click.option("--home", envvar="ION_HOME", help="Ion's home directory (default ~/.ion).")
@click.option("--log-level", default="INFO", show_default=True)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_context
def main(ctx: click.Context, home: str | None, log_level: str, log_format: str) -> None:
    """Ion dispatcher: runs jobs of modules when their events arrive."""
    ctx.obj = (home, log_level, log_format)


@main.command()
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="YAML file with one module spec.",
)
@click.pass_obj
def serve(obj: tuple[str | None, str, str], spec_path: Path) -> None:
    """Run one module's dispatcher until SIGTERM or Ctrl-C."""
    try:
        settings = _settings(*obj)
        spec = ModuleSpec.parse(yaml.safe_load(spec_path.read_text()))
    except (errors.IonError, OSError) as err:
        _fail(err if isinstance(err, errors.IonError) else errors.ConfigError(str(err)))
        return

    async def go(stop: asyncio.Event) -> None:
        # The same machinery as `pipeline run` and `ion up`, with this one module.
        async with EmbeddedPlatform(settings, working_dir=spec_path.resolve().parent) as platform:
            await platform.start_module(
                ModuleRecord(id=spec.name, spec=spec, created_at=datetime.now(UTC))
            )
            await stop.wait()

    try:
        _run_until_signal(go)
    except errors.IonError as err:
        _fail(err)


@main.group()
def pipeline() -> None:
    """Run pipeline files locally."""


@pipeline.command("run")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "-d", multiple=True, help="Root event data as key=value (repeatable).")
@click.option(
    "--timeout", default=300.0, show_default=True, help="Seconds to wait for the flow to settle."
)
@click.option(
    "-o", "--output", type=click.Choice(["tree", "json"]), default="tree", show_default=True
)
@click.pass_obj
def pipeline_run(
    obj: tuple[str | None, str, str], path: Path, data: tuple[str, ...], timeout: float, output: str
) -> None:
    """Start PATH's modules, raise its root event, wait until the flow settles, print the tree.

    Exits 0 only if the flow succeeded: every module run in it succeeded, and at least one
    module handled the root event.
    """
    home, log_level, log_format = obj
    try:
        # The tree is the report; only warnings and errors go to the log unless asked.
        settings = _settings(home, log_level if log_level != "INFO" else "WARNING", log_format)
        spec = PipelineSpec.load(path)
        extra = dict(_pair(d) for d in data)
        with err_console.status(f"running {spec.name} ...") as status:

            def progress(flow: Flow) -> None:
                runs = flow.runs()
                done = sum(1 for r in runs if r.status.settled)
                active = ", ".join(
                    r.module for r in runs if r.status in (RunStatus.RUNNING, RunStatus.RETRYING)
                )
                status.update(f"running {spec.name}: {done}/{len(runs)} module runs done  {active}")

            flow = asyncio.run(
                run_pipeline(spec, settings, data=extra, timeout=timeout, on_progress=progress)
            )
    except errors.IonError as err:
        _fail(err)
        return
    except Exception as err:  # an Ion bug: one line for the user, the traceback in the log
        logging.getLogger("ion.dispatcher").debug("unexpected error", exc_info=True)
        err_console.print(
            f"[bold red]unexpected error:[/] {type(err).__name__}: {err}\n"
            "this is a bug in Ion; run again with --log-level DEBUG for the traceback and report it"
        )
        sys.exit(1)
    if output == "json":
        # the same shape as `ion trace flow -o json`
        click.echo(json.dumps(flow.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print_flow(flow)
        err_console.print(f"outputs: {settings.blobs_url}/{flow.correlation_id}/", soft_wrap=True)
        err_console.print(
            f"logs:    {settings.blobs_url}/logs/{flow.correlation_id}/", soft_wrap=True
        )
    if not flow.succeeded:
        unhandled = [r.event_type for r in flow.roots if not r.handled]
        if unhandled:
            err_console.print(
                f"[bold red]the flow did not succeed[/]: no module subscribes to"
                f" {', '.join(unhandled)}, so nothing ran"
            )
        else:
            err_console.print(
                "[bold red]the flow did not succeed[/]; see the reasons and logs above"
            )
        sys.exit(1)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise errors.ValidationError(f"--data {text!r} must look like key=value", field="data")
    return key, value


if __name__ == "__main__":
    main()
