"""`ion trace flow -c <correlation id>`: a flow as a tree, or the 2018 flat documents."""

from __future__ import annotations

import click

from ion.cli.commands._common import call
from ion.cli.main import connection_options
from ion.cli.output import console, render_one

FLOW_FAILED = 1
"""Exit code of `trace flow` for a flow that settled without success (as `pipeline run`)."""
FLOW_NOT_SETTLED = 3
"""Exit code of `trace flow` for a flow with runs pending, running or retrying."""


@click.group()
@connection_options
def trace() -> None:
    """Follow flows."""


@trace.command()
@connection_options
@click.option(
    "-c",
    "--correlationid",
    "--correlation-id",
    "correlation_id",
    required=True,
    help="The flow's correlation id (printed by `ion event create`), or a unique prefix.",
)
@click.option(
    "--wait",
    type=float,
    default=0,
    help="Wait up to this many seconds for the flow to settle.",
)
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["tree", "json", "yaml", "flat"]),
    default="tree",
    show_default=True,
    help="tree: drawn; json/yaml: the structured flow; flat: the 2018 document list.",
)
@click.option("--logs", "show_logs", is_flag=True, help="Show where each run's logs are.")
def flow(correlation_id: str, wait: float, fmt: str, show_logs: bool) -> None:
    """Show a flow: every event, the modules it triggered, their attempts and outputs.

    Exits 0 if the flow succeeded, 1 if it settled without success, 3 if it has not settled
    (`-o flat` keeps 2018's 0).
    """
    reply = call(lambda client: client.get_flow(correlation_id, wait=wait))
    if fmt == "flat":
        click.echo(reply.flowJSON)
        return
    from ion.cli.flows import flow_from_message

    tree = flow_from_message(reply.flow, status=reply.status)
    if fmt in ("json", "yaml"):
        # the same shape as `ion-management pipeline run -o json`
        render_one(tree.model_dump(mode="json"), fmt)
    else:
        from ion.core.flowtree import flow_tree

        console().print(flow_tree(tree, show_logs=show_logs))
    if not reply.flow.settled:
        if wait:
            click.echo(f"ion: note: the flow has not settled after {wait:g}s", err=True)
        raise click.exceptions.Exit(FLOW_NOT_SETTLED)
    if not reply.flow.succeeded:
        raise click.exceptions.Exit(FLOW_FAILED)
