"""`ion-handler prepare | commit | run`: the job-side half of Ion, as a command.

Flags keep the 2018 names (`--context.eventid`, `--valideventtypes`, `--basedir`, and
`start --action=prepare|commit`), so existing job templates keep working. Backends come from
Ion's settings (`ION_BUS__URL`, `ION_BLOBS__URL`, `ION_META__URL`), never from flags.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# The work lives in ion.handler.actions, imported only by the command that runs: `--help` and
# usage errors then start without pydantic, the backends or OpenTelemetry.


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


@click.group()
@click.option("--loglevel", "-l", default=None, help="debug, info, warning or error [info].")
@click.pass_context
def main(ctx: click.Context, loglevel: str | None) -> None:
    """Prepare a module's job directory, commit its outputs, or do both around a run."""
    ctx.obj = loglevel


@main.command("prepare")
@_job_options
@click.pass_obj
def prepare_command(loglevel: str | None, /, **kw: Any) -> None:
    """Lay out the job directory and download the parent's files and data."""
    from ion.handler import actions

    sys.exit(actions.prepare_job({**kw, "loglevel": loglevel}))


@main.command("commit")
@_job_options
@click.pass_obj
def commit_command(loglevel: str | None, /, **kw: Any) -> None:
    """Upload outputs, store insights, and publish the module's events."""
    from ion.handler import actions

    sys.exit(actions.commit_job({**kw, "loglevel": loglevel}))


@main.command("run", context_settings={"ignore_unknown_options": True})
@_job_options
@click.option(
    "--max-exec-seconds", default=600.0, show_default=True, help="Kill the module after this."
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run_command(
    loglevel: str | None, /, command: tuple[str, ...], max_exec_seconds: float, **kw: Any
) -> None:
    """Prepare, run COMMAND as the module, and commit only if it exits 0."""
    from ion.handler import actions

    sys.exit(
        actions.run_job(
            {**kw, "loglevel": loglevel}, command=list(command), max_exec_seconds=max_exec_seconds
        )
    )


@main.group("job")
def job_group() -> None:
    """The steps of a job pod, its request in ION_JOB_REQUEST (set by Ion's executor)."""


@job_group.command("prepare")
def job_prepare_command() -> None:
    """Lay out /ion for the module; the outcome goes to the termination message."""
    from ion.handler import podjob

    sys.exit(podjob.prepare_step())


@job_group.command("commit")
def job_commit_command() -> None:
    """Commit the module's outputs and publish its events; the result is the outcome."""
    from ion.handler import podjob

    sys.exit(podjob.commit_step())


@main.command("start", hidden=True)
@click.option("--action", "-a", type=click.Choice(["prepare", "commit"]), required=True)
@_job_options
@click.pass_context
def start_command(ctx: click.Context, /, action: str, **kw: Any) -> None:
    """2018 form: `handler start --action=prepare|commit`."""
    target = prepare_command if action == "prepare" else commit_command
    ctx.invoke(target, **kw)


if __name__ == "__main__":
    main()
