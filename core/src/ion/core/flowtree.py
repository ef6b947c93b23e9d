"""Draw a flow (`ion.core.flow.Flow`) as a tree in the terminal: events, the modules they
triggered, each run's status, attempts, duration, insights, outputs and log locations.

The one renderer of flows: `ion-management pipeline run` draws the flow it built and `ion trace
flow` the one the server sent (as `ion.v1.Flow`, turned back into the model). Needs `rich`
(`ion-core[tree]`); nothing else in ion.core imports this module.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from ion.core.flow import Flow, FlowEvent, FlowModuleRun
from ion.core.flowindex import FlowStatus
from ion.core.records import RunStatus

__all__ = ["flow_tree", "print_flow"]

STYLE = {
    RunStatus.SUCCEEDED: "green",
    RunStatus.DEAD_LETTERED: "bold red",
    RunStatus.RETRYING: "yellow",
    RunStatus.RUNNING: "cyan",
    RunStatus.PENDING: "dim",
    RunStatus.FILTERED: "blue",
    RunStatus.CANCELLED: "magenta",
}
MARK = {
    RunStatus.SUCCEEDED: "✔",
    RunStatus.DEAD_LETTERED: "✘",
    RunStatus.RETRYING: "↻",
    RunStatus.RUNNING: "…",
    RunStatus.PENDING: "·",
    RunStatus.FILTERED: "⊘",
    RunStatus.CANCELLED: "⊗",
}


def _event_label(event: FlowEvent, *, root: bool) -> Text:
    label = Text.assemble(("⚡ ", "bold"), (event.event_type or "?", "bold magenta"))
    label.append(f"  {event.event_id[:8]}")
    if event.published_by:
        label.append(f"  by {event.published_by}", style="dim")
    if event.files:
        label.append(f"  {len(event.files)} file(s)", style="dim")
    files = set(event.files)  # the `<file> → URL` pairs say nothing the file count does not
    shown = [kv for kv in event.data if kv.key not in files][:3]
    if shown:
        label.append("  " + ", ".join(f"{kv.key}={kv.value}" for kv in shown), style="dim")
    if event.missing_document:
        label.append("  no eventMeta document (known from its attempts only)", style="red")
    elif root and not event.raised_from_outside:
        label.append(f"  parent {event.parent_event_id[:8]} is not in the flow", style="yellow")
    if not event.handled:
        # A root nobody handles means no work was done; a child nobody handles ends a branch.
        label.append("  no subscribers", style="yellow" if root else "dim")
    return label


def _run_label(run: FlowModuleRun) -> Text:
    style = STYLE.get(run.status, "")
    duration = f"{run.duration_seconds:.2f}s" if run.duration_seconds is not None else "-"
    label = Text.assemble(
        (f"{MARK.get(run.status, '?')} ", style),
        (run.module, "bold"),
        "  ",
        (run.status.value, style),
    )
    if run.status == RunStatus.FILTERED:
        return label  # never ran: no attempts or duration to speak of
    label.append(f"  attempts={len(run.attempts)}  {duration}")
    route = run.attempts[-1].route if run.attempts else None
    if route is not None:
        label.append(f"  {route.describe()}", style="blue")
    if run.insights:
        shown = ", ".join(f"{kv.key}={kv.value}" for kv in run.insights[:3])
        label.append(f"  {shown}", style="dim")
    return label


def flow_tree(flow: Flow, *, show_outputs: int = 3, show_logs: bool = False) -> Tree:
    """Return a rich Tree of the flow; `show_logs` adds each run's log locations."""
    if flow.succeeded:
        state = ("succeeded", "green")
    elif flow.status == FlowStatus.CANCELLED:
        state = ("cancelled (did not succeed)", "magenta")
    elif flow.status == FlowStatus.NO_SUBSCRIBER:
        state = ("did not succeed: no module subscribes to its root event", "red")
    elif flow.settled:
        state = ("did not succeed", "red")
    else:
        state = ("in progress", "cyan")
    tree = Tree(Text.assemble(("flow ", "bold"), flow.correlation_id, "  ", state))

    def add_event(parent: Tree, event: FlowEvent, *, root: bool) -> None:
        node = parent.add(_event_label(event, root=root))
        for run in event.triggered:
            run_node = node.add(_run_label(run))
            if run.status == RunStatus.FILTERED:
                run_node.add(Text(run.reason or "filtered", style="blue"))
            elif run.status == RunStatus.CANCELLED:
                run_node.add(Text(run.reason or "cancelled", style="magenta"))
            elif run.reason and run.status != RunStatus.SUCCEEDED:
                run_node.add(Text(f"reason: {run.reason}", style="red"))
            for key in run.outputs[:show_outputs]:
                # keys are <correlation>/<event>/<module>/<path>; the path is what the module wrote
                run_node.add(Text(key.split("/", 3)[-1], style="dim"))
            if len(run.outputs) > show_outputs:
                run_node.add(
                    Text(f"… {len(run.outputs) - show_outputs} more output(s)", style="dim")
                )
            if show_logs:
                for ref in run.logs:
                    run_node.add(Text(f"logs: {ref}", style="dim"))
            for child in run.children:
                add_event(run_node, child, root=False)

    for root in flow.roots:
        add_event(tree, root, root=True)
    return tree


def print_flow(flow: Flow, console: Console | None = None, *, show_logs: bool = False) -> None:
    """Print the flow tree."""
    (console or Console()).print(flow_tree(flow, show_logs=show_logs))
