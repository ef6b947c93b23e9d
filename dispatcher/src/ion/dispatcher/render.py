"""Draw a flow as a tree in the terminal (rich), with status, attempts, duration and outputs."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from ion.dispatcher.flow import (
    DEAD_LETTERED,
    FAILED,
    PENDING,
    RETRYING,
    RUNNING,
    SUCCEEDED,
    Flow,
    FlowEvent,
)

_STYLE = {
    SUCCEEDED: "green",
    FAILED: "red",
    DEAD_LETTERED: "bold red",
    RETRYING: "yellow",
    RUNNING: "cyan",
    PENDING: "dim",
}


def _event_label(event: FlowEvent) -> Text:
    label = Text.assemble(
        ("⚡ ", "bold"), (event.event_type, "bold magenta"), f"  {event.event_id[:8]}"
    )
    if event.files:
        label.append(f"  {len(event.files)} file(s)", style="dim")
    return label


def flow_tree(flow: Flow, *, show_outputs: int = 3) -> Tree:
    """Return a rich Tree of the flow."""
    tree = Tree(Text.assemble(("flow ", "bold"), flow.correlation_id))

    def add_event(parent: Tree, event: FlowEvent) -> None:
        node = parent.add(_event_label(event))
        for run in event.triggered:
            duration = f"{run.duration_seconds:.2f}s" if run.duration_seconds is not None else "-"
            label = Text.assemble(
                ("▶ ", "bold"),
                (run.module, "bold"),
                "  ",
                (run.status, _STYLE.get(run.status, "")),
                f"  attempts={len(run.attempts)}  {duration}",
            )
            if run.insights:
                shown = ", ".join(f"{k}={v}" for k, v in list(run.insights.items())[:3])
                label.append(f"  {shown}", style="dim")
            run_node = node.add(label)
            if run.reason and run.status != SUCCEEDED:
                run_node.add(Text(f"reason: {run.reason}", style="red"))
            for key in run.outputs[:show_outputs]:
                # keys are <correlation>/<event>/<module>/<path>; the path is what the module wrote
                run_node.add(Text(key.split("/", 3)[-1], style="dim"))
            if len(run.outputs) > show_outputs:
                run_node.add(
                    Text(f"… {len(run.outputs) - show_outputs} more output(s)", style="dim")
                )
            for child in run.children:
                add_event(run_node, child)

    for root in flow.roots:
        add_event(tree, root)
    return tree


def print_flow(flow: Flow, console: Console | None = None) -> None:
    """Print the flow tree."""
    (console or Console()).print(flow_tree(flow))
