"""`ion-handler prepare | commit | run`: the job-side half of Ion, as a command.

Flags keep the 2018 names (`--context.eventid`, `--valideventtypes`, `--basedir`, and
`start --action=prepare|commit`), so existing job templates keep working. Backends come from
Ion's settings (`ION_BUS__URL`, `ION_BLOBS__URL`, `ION_META__URL`), never from flags.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from ion.core import errors
from ion.core.backends import open_blobs, open_bus, open_meta
from ion.core.config import IonSettings, load_settings
from ion.core.contract import JobLayout
from ion.core.events import Context, Event
from ion.handler.commit import commit
from ion.handler.job import HandlerJob
from ion.handler.prepare import prepare
from ion.handler.supervisor import module_environment, run_module

log = logging.getLogger("ion.handler")
F = TypeVar("F", bound=Callable[..., Any])


def _job_options(fn: F) -> F:
    options = [
        click.option("--context.name", "module", required=True, help="This module's name."),
        click.option("--context.eventid", "event_id", required=True, help="Incoming event id."),
        click.option("--context.correlationid", "correlation_id", required=True, help="Flow id."),
        click.option(
            "--context.parenteventid",
            "parent_event_id",
            default="",
            help="Parent of the incoming event.",
        ),
        click.option("--event-type", default="", help="Type of the incoming event."),
        click.option(
            "--valideventtypes", default="", help="Comma list of event types the module may raise."
        ),
        click.option(
            "--basedir",
            "-b",
            default="",
            help="Job directory (default: HANDLER_BASE_DIR, else /ion).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _job(settings: IonSettings, kw: dict[str, Any]) -> HandlerJob:
    base = kw["basedir"] if kw["basedir"] not in ("", "./", ".\\") else settings.handler.base_dir
    event = Event(
        context=Context(
            event_id=kw["event_id"],
            correlation_id=kw["correlation_id"],
            parent_event_id=kw["parent_event_id"],
        ),
        type=kw["event_type"],
    )
    publishes = frozenset(t.strip() for t in kw["valideventtypes"].split(",") if t.strip())
    return HandlerJob(
        module=kw["module"], event=event, publishes=publishes, layout=JobLayout(Path(base))
    )


async def _with_backends(settings: IonSettings, action: Callable[..., Any]) -> Any:
    bus, blobs, meta = (
        open_bus(settings.bus_url),
        open_blobs(settings.blobs_url),
        open_meta(settings.meta_url),
    )
    try:
        return await action(bus=bus, blobs=blobs, meta=meta)
    finally:
        for backend in (bus, blobs, meta):
            await backend.aclose()


def _run(coro_factory: Callable[[], Any]) -> None:
    """Run the command's coroutine; an Ion error (settings included) is one line, exit 1."""
    try:
        asyncio.run(coro_factory())
    except errors.IonError as err:
        click.echo(f"ion-handler: {err}", err=True)
        sys.exit(1)


@click.group()
@click.option("--loglevel", "-l", default="info", help="debug, info, warning or error.")
def main(loglevel: str) -> None:
    """Prepare a module's job directory, commit its outputs, or do both around a run."""
    logging.basicConfig(
        level=loglevel.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command("prepare")
@_job_options
def prepare_command(**kw: Any) -> None:
    """Lay out the job directory and download the parent's files and data."""

    async def go() -> None:
        settings = load_settings()
        job = _job(settings, kw)
        await _with_backends(
            settings, lambda bus, blobs, meta: prepare(job, blobs=blobs, meta=meta)
        )

    _run(go)


@main.command("commit")
@_job_options
def commit_command(**kw: Any) -> None:
    """Upload outputs, store insights, and publish the module's events."""

    async def go() -> None:
        settings = load_settings()
        job = _job(settings, kw)
        lifetime = timedelta(hours=settings.blobs.sas_lifetime_hours)
        await _with_backends(
            settings,
            lambda bus, blobs, meta: commit(
                job, blobs=blobs, meta=meta, bus=bus, url_lifetime=lifetime
            ),
        )

    _run(go)


@main.command("run", context_settings={"ignore_unknown_options": True})
@_job_options
@click.option(
    "--max-exec-seconds", default=600.0, show_default=True, help="Kill the module after this."
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_command(command: tuple[str, ...], max_exec_seconds: float, **kw: Any) -> None:
    """Prepare, run COMMAND as the module, and commit only if it exits 0."""
    exit_code = 0

    async def go() -> None:
        settings = load_settings()
        job = _job(settings, kw)
        lifetime = timedelta(hours=settings.blobs.sas_lifetime_hours)
        await _with_backends(
            settings,
            lambda bus, blobs, meta: run_job(
                job, bus=bus, blobs=blobs, meta=meta, lifetime=lifetime
            ),
        )

    async def run_job(
        job: HandlerJob, *, bus: Any, blobs: Any, meta: Any, lifetime: timedelta
    ) -> None:
        nonlocal exit_code
        await prepare(job, blobs=blobs, meta=meta)
        result = await run_module(
            list(command),
            env=module_environment(job.layout.base, {}),
            cwd=None,
            log_path=job.layout.base / "module.log",
            deadline=timedelta(seconds=max_exec_seconds),
        )
        sys.stderr.write((job.layout.base / "module.log").read_text(errors="replace"))
        if result.exit_code != 0 or result.timed_out:
            why = "timed out" if result.timed_out else f"exited {result.exit_code}"
            click.echo(f"ion-handler: module {job.module!r} {why}; nothing committed", err=True)
            exit_code = result.exit_code or 1
            return
        await commit(job, blobs=blobs, meta=meta, bus=bus, url_lifetime=lifetime)

    _run(go)
    sys.exit(exit_code)


@main.command("start", hidden=True)
@click.option("--action", "-a", type=click.Choice(["prepare", "commit"]), required=True)
@_job_options
@click.pass_context
def start_command(ctx: click.Context, /, action: str, **kw: Any) -> None:
    """2018 form: `handler start --action=prepare|commit`."""
    ctx.invoke(prepare_command if action == "prepare" else commit_command, **kw)


if __name__ == "__main__":
    main()
