"""`ion flow list|get|cancel` (flows as objects) and `ion logs` (a job attempt's stored log).

Every id is accepted in full or as a unique prefix (the 8-character ids tables and trees print);
the server resolves it and refuses an ambiguous one with the candidates. `flow get` exits like
`ion trace flow`: 0 only if the flow succeeded, 1 if it settled without success, 3 if it has not
settled.
"""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from ion.cli.client import IonClient
from ion.cli.commands._common import call
from ion.cli.main import connection_options
from ion.cli.output import console, render, render_one
from ion.core import FlowStatus, FlowSummary
from ion.core.flow import Flow
from ion.proto import trace_pb2

FLOW_FAILED = 1
"""Exit code of `flow get` for a flow that settled without success."""
FLOW_NOT_SETTLED = 3
"""Exit code of `flow get` for a flow with runs pending, running or retrying."""
SHORT = 8
"""Characters of an id that tables print (any unique prefix is accepted back)."""
POLL_SECONDS = 1.0

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, *, now: datetime | None = None, flag: str = "--since") -> datetime:
    """A `--since` (or `--until`) value as a UTC time: a duration back from now (`90s`, `30m`, `1h`, `2d`,
    `1w`) or an ISO 8601 / RFC 3339 timestamp (UTC if it names no zone).

    Raises:
        click.BadParameter: neither.
    """
    match = _AGO.match(text)
    if match:
        amount, unit = float(match[1]), _UNITS[match[2]]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration (90s, 30m, 1h, 2d, 1w) nor a timestamp"
            " (2026-01-31T12:00:00Z)",
            param_hint=flag,
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _age(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _runs(summary: FlowSummary) -> str:
    return " ".join(f"{status.value.lower()}={n}" for status, n in sorted(summary.runs.items()))


def _row(summary: FlowSummary, *, wide: bool, now: datetime) -> dict[str, Any]:
    cid = summary.correlation_id
    row: dict[str, Any] = {
        "id": cid if wide else cid[:SHORT],
        "status": summary.status.value,
        "root": summary.root_event_type,
        "age": _age(summary.started_at, now),
        "runs": _runs(summary),
    }
    if wide:
        row |= {
            "started": summary.started_at.isoformat(timespec="seconds"),
            "updated": summary.updated_at.isoformat(timespec="seconds"),
            "root_event": summary.root_event_id,
            "modules": summary.modules,
        }
    return row


@click.group()
@connection_options
def flow() -> None:
    """List, show, follow and cancel flows (one correlation id each)."""


@flow.command("list")
@connection_options
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in FlowStatus], case_sensitive=False),
    help="Only flows in this status (repeat for several).",
)
@click.option("--module", default="", help="Only flows a module (name or id) ran in.")
@click.option(
    "--type", "root_type", default="", help="Only flows whose root event is of this type."
)
@click.option(
    "--since", default="", help="Only flows started since: 90s, 30m, 1h, 2d, or a timestamp."
)
@click.option(
    "--until", default="", help="Only flows started before: 90s, 30m, 1h, 2d (ago), or a timestamp."
)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Flows per page."
)
@click.option("--continue", "cursor", default="", metavar="TOKEN", help="The next page's token.")
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["table", "wide", "json", "yaml"]),
    default="table",
    show_default=True,
    help="table: short ids; wide: full ids and more columns; json/yaml: every field.",
)
def list_flows(
    statuses: tuple[str, ...],
    module: str,
    root_type: str,
    since: str,
    until: str,
    limit: int,
    cursor: str,
    fmt: str,
) -> None:
    """List flows, newest first; `--continue TOKEN` shows the next page."""
    from ion.cli.flows import summary_from_message

    request = trace_pb2.ListFlowsRequest(
        status=[s.upper() for s in statuses],
        module=module,
        root_event_type=root_type,
        started_after=parse_since(since).isoformat() if since else "",
        started_before=parse_since(until, flag="--until").isoformat() if until else "",
        limit=limit,
        cursor=cursor,
    )
    reply = call(lambda client: client.list_flows(request))
    items = [summary_from_message(m) for m in reply.flows]
    if fmt in ("json", "yaml"):
        render_one(
            {
                "items": [s.model_dump(mode="json") for s in items],
                "next_cursor": reply.next_cursor,
            },
            fmt,
        )
        return
    now = datetime.now(UTC)
    wide = fmt == "wide"
    columns = ["id", "status", "root", "age", "runs"]
    if wide:
        columns += ["started", "updated", "root_event", "modules"]
    if items:
        render([_row(s, wide=wide, now=now) for s in items], "table", columns=columns)
    else:
        click.echo("no flows", err=True)
    if reply.next_cursor:
        click.echo(f"more: ion flow list --continue {reply.next_cursor}", err=True)


def _exit_code(flow: Flow) -> int:
    if not flow.settled:
        return FLOW_NOT_SETTLED
    return 0 if flow.succeeded else FLOW_FAILED


def _show(flow: Flow, fmt: str, *, show_logs: bool) -> None:
    if fmt in ("json", "yaml"):
        render_one(flow.model_dump(mode="json"), fmt)  # the one JSON shape of a flow
        return
    from ion.core.flowtree import flow_tree

    console().print(flow_tree(flow, show_logs=show_logs))


async def _get(client: IonClient, ref: str) -> Flow:
    from ion.cli.flows import flow_from_message

    reply = await client.get_flow(ref)
    return flow_from_message(reply.flow, status=reply.status)


async def _watch(client: IonClient, ref: str, fmt: str, *, show_logs: bool, every: float) -> Flow:
    """Redraw the tree until the flow settles (a live display on a terminal); return it."""
    from rich.live import Live

    from ion.core.flowtree import flow_tree

    current = await _get(client, ref)
    ref = current.correlation_id  # one flow from now on, even if `ref` was a prefix
    if not current.settled:
        click.echo(f"ion: watching flow {ref} until it settles (Ctrl-C stops watching)", err=True)
    if fmt in ("json", "yaml"):
        while not current.settled:
            await asyncio.sleep(every)
            current = await _get(client, ref)
        return current
    out = console()
    with Live(flow_tree(current, show_logs=show_logs), console=out, auto_refresh=False) as live:
        while not current.settled:
            await asyncio.sleep(every)
            current = await _get(client, ref)
            live.update(flow_tree(current, show_logs=show_logs), refresh=True)
    return current


@flow.command("get")
@connection_options
@click.argument("flow_id")
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["tree", "json", "yaml"]),
    default="tree",
    show_default=True,
    help="tree: drawn; json/yaml: the flow (the same shape as `ion trace flow -o json`).",
)
@click.option("-w", "--watch", is_flag=True, help="Redraw the tree live until the flow settles.")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 60),
    default=POLL_SECONDS,
    show_default=True,
    help="Seconds between redraws with --watch.",
)
@click.option("--logs", "show_logs", is_flag=True, help="Show where each run's logs are.")
def get_flow(flow_id: str, fmt: str, watch: bool, interval: float, show_logs: bool) -> None:
    """Show a flow (by its id or a unique prefix) as a tree.

    Exits 0 if the flow succeeded, 1 if it settled without success, 3 if it has not settled.
    """
    if watch:
        try:
            shown = call(
                lambda client: _watch(client, flow_id, fmt, show_logs=show_logs, every=interval)
            )
        except KeyboardInterrupt:
            click.echo(
                f"ion: stopped watching; the flow goes on. Follow it again with"
                f" `ion flow get {flow_id} --watch`, or stop it with `ion flow cancel {flow_id}`",
                err=True,
            )
            raise click.exceptions.Exit(FLOW_NOT_SETTLED) from None
        if fmt in ("json", "yaml"):
            _show(shown, fmt, show_logs=show_logs)
    else:
        shown = call(lambda client: _get(client, flow_id))
        _show(shown, fmt, show_logs=show_logs)
    raise click.exceptions.Exit(_exit_code(shown))


@flow.command("cancel")
@connection_options
@click.argument("flow_id")
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
    help="text: one line; json/yaml: the flow's summary after the cancel.",
)
def cancel_flow(flow_id: str, fmt: str) -> None:
    """Cancel a flow: its running jobs are stopped, its queued events never run.

    Every process sees it (it is recorded in the store); the tree then says CANCELLED.
    Cancelling a flow that has settled changes nothing.
    """
    from ion.cli.flows import summary_from_message

    reply = call(lambda client: client.cancel_flow(flow_id))
    summary = summary_from_message(reply.flow)
    if fmt != "text":
        render_one(
            {**summary.model_dump(mode="json"), "already_settled": reply.already_settled}, fmt
        )
        return
    if reply.already_settled:
        click.echo(
            f"flow {summary.correlation_id} had settled already ({summary.status.value});"
            " nothing was left to cancel"
        )
        return
    from ion.core import RunStatus

    cancelled = summary.runs.get(RunStatus.CANCELLED, 0)
    click.echo(
        f"cancelled flow {summary.correlation_id}: {cancelled} run(s) cancelled; running jobs"
        " stop within seconds (`ion flow get` shows them)"
    )


def _header(log: trace_pb2.AttemptLog) -> str:
    return (
        f"==> {log.module} attempt {log.attempt} ({log.state}) {log.attempt_id}"
        f"  flow {log.correlation_id[:SHORT]} <=="
    )


def _write(content: bytes) -> None:
    sys.stdout.buffer.write(content)
    sys.stdout.flush()


async def _logs(client: IonClient, ref: str, module: str, *, follow: bool, every: float) -> None:
    reply = await client.get_log(ref, module=module)
    if not reply.logs:
        click.echo("ion: no job attempts yet", err=True)
    single = len(reply.logs) == 1 and (not ref or reply.logs[0].attempt_id.startswith(ref))
    offsets: dict[str, int] = {}
    open_ids: list[str] = []
    for log in reply.logs:
        if not single:
            click.echo(_header(log))
        _write(log.content)
        if log.note:
            click.echo(f"ion: note: {log.attempt_id}: {log.note}", err=True)
        offsets[log.attempt_id] = log.next_offset
        if not log.finished:
            open_ids.append(log.attempt_id)
    if not follow:
        return
    correlation_id = reply.logs[0].correlation_id if reply.logs and not single else ""
    if not reply.logs and ref:  # a flow with no attempt yet: wait for its first ones
        correlation_id = (await client.get_flow(ref)).flow.correlation_id
    skipped: set[str] = set()  # attempts of other modules than --module's
    while True:
        for attempt_id in open_ids:
            await _follow(client, attempt_id, offsets, every=every, header=not single)
        if not correlation_id:
            return
        # A flow: attempts started since are followed too, until the flow settles. The tree
        # says which attempts are new; only then are logs read again.
        from ion.cli.flows import flow_from_message

        tree = flow_from_message((await client.get_flow(correlation_id)).flow)
        unseen = [
            a.id
            for run in tree.runs()
            for a in run.attempts
            if a.id not in offsets and a.id not in skipped
        ]
        open_ids = []
        if unseen:
            for log in (await client.get_log(correlation_id, module=module)).logs:
                if log.attempt_id in offsets:
                    continue
                click.echo(_header(log))
                _write(log.content)
                offsets[log.attempt_id] = log.next_offset
                if not log.finished:
                    open_ids.append(log.attempt_id)
            skipped.update(i for i in unseen if i not in offsets)
        if tree.settled and not open_ids:
            return
        if not open_ids:
            await asyncio.sleep(every)


async def _follow(
    client: IonClient, attempt_id: str, offsets: dict[str, int], *, every: float, header: bool
) -> None:
    """Print what one attempt's log gains until the attempt ends."""
    if header:
        click.echo(f"==> following {attempt_id} <==")
    while True:
        [log] = (await client.get_log(attempt_id, offset=offsets[attempt_id])).logs
        _write(log.content)
        offsets[attempt_id] = log.next_offset
        if log.finished:
            click.echo(f"ion: {attempt_id} ended {log.state}", err=True)
            return
        await asyncio.sleep(every)


@click.command()
@connection_options
@click.argument("ref", metavar="[ATTEMPT_ID|FLOW_ID]", required=False, default="")
@click.option(
    "--module", default="", help="Only this module's attempts (alone: its latest attempt)."
)
@click.option("-f", "--follow", is_flag=True, help="Follow a running attempt until it ends.")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 60),
    default=0.5,
    show_default=True,
    help="Seconds between polls with -f.",
)
def logs(ref: str, module: str, follow: bool, interval: float) -> None:
    """Print a job attempt's log: the module's stdout and stderr, plus Ion's prepare and commit
    lines; for a flow, every attempt's (oldest first, each under a header).

    Ids may be given in full or as a unique prefix. The same for every executor: the log is
    the one stored when the attempt ended; while it runs, what it has written so far where the
    server can read it.
    """
    if not ref and not module:
        raise click.UsageError("name an attempt or a flow, or a module with --module")
    try:
        call(lambda client: _logs(client, ref, module, follow=follow, every=interval))
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
