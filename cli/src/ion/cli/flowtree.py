"""Draw a flow (`ion.v1.Flow`) as a tree in the terminal: events, the modules they triggered,
each run's status, attempts, duration, insights, outputs and log locations."""

from __future__ import annotations

from rich.text import Text
from rich.tree import Tree

from ion.proto.v1 import types_pb2

STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "DEAD_LETTERED": "bold red",
    "RETRYING": "yellow",
    "RUNNING": "cyan",
    "PENDING": "dim",
}
MARK = {
    "SUCCEEDED": "✔",
    "FAILED": "✘",
    "DEAD_LETTERED": "✘",
    "RETRYING": "↻",
    "RUNNING": "…",
    "PENDING": "·",
}


def _event_label(event: types_pb2.FlowEvent) -> Text:
    label = Text.assemble(
        ("⚡ ", "bold"),
        (event.event_type, "bold magenta"),
        f"  {event.event_id[:8]}",
        (f"  by {event.published_by}", "dim"),
    )
    if event.files:
        label.append(f"  {len(event.files)} file(s)", style="dim")
    shown = [kv for kv in event.data if kv.key not in set(event.files)][:3]
    if shown:
        label.append("  " + ", ".join(f"{kv.key}={kv.value}" for kv in shown), style="dim")
    return label


def flow_tree(flow: types_pb2.Flow, *, show_outputs: int = 3, show_logs: bool = False) -> Tree:
    """Return a rich Tree of the flow."""
    if flow.succeeded:
        state = ("succeeded", "green")
    elif flow.settled:
        state = ("settled with failures", "red")
    else:
        state = ("in progress", "cyan")
    tree = Tree(Text.assemble(("flow ", "bold"), flow.correlation_id, "  ", state))

    def add_event(parent: Tree, event: types_pb2.FlowEvent) -> None:
        node = parent.add(_event_label(event))
        for run in event.triggered:
            duration = f"{run.duration_seconds:.2f}s" if run.duration_seconds else "-"
            label = Text.assemble(
                (f"{MARK.get(run.status, '?')} ", STYLE.get(run.status, "")),
                (run.module, "bold"),
                "  ",
                (run.status, STYLE.get(run.status, "")),
                f"  attempts={len(run.attempts)}  {duration}",
            )
            if run.insights:
                shown = ", ".join(f"{kv.key}={kv.value}" for kv in run.insights[:3])
                label.append(f"  {shown}", style="dim")
            run_node = node.add(label)
            if run.reason and run.status != "SUCCEEDED":
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
                add_event(run_node, child)

    for root in flow.roots or ([flow.root] if flow.HasField("root") else []):
        add_event(tree, root)
    return tree
