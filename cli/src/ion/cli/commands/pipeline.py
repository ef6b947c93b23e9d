"""`ion pipeline run FILE`: run a pipeline file on this machine (no server needed).

It replaces itself with `ion-management pipeline run`, which starts every module of the file
over embedded backends (in a temporary home unless ION_HOME names one), raises the root
event, waits until the flow settles and prints it; Ctrl-C reaches it directly.
"""

from __future__ import annotations

import os

import click

from ion.cli.commands._management import management_executable
from ion.cli.errors import CliError


@click.group()
def pipeline() -> None:
    """Run pipeline files on this machine."""


@pipeline.command(
    "run",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(args: tuple[str, ...]) -> None:
    """Run FILE: start its modules, raise its root event, print the flow when it settles.

    Options (see `ion pipeline run --help`): --data/-d key=value, --file/-f NAME=PATH,
    --timeout SECONDS, -o tree|json, --log-level LEVEL. It runs in a temporary home of its
    own unless ION_HOME names one (or `ion-management --home DIR pipeline run`). Exits 0
    only if the flow succeeded, 130 on Ctrl-C.
    """
    executable = management_executable()
    argv = [executable, "pipeline", "run", *args]
    try:
        os.execv(executable, argv)
    except OSError as err:
        raise CliError(f"cannot start {executable}: {err}") from err
