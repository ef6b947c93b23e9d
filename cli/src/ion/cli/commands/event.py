"""`ion event create|get|peek` and `ion event dlq list|replay`: events through the management API.

The 2018 `event` commands spoke AMQP to Service Bus directly; here every command goes through
the management server, so `--amqp-connection-string` is accepted and ignored (with a note),
and `event create` writes the event's metadata like a front API event, so modules get its data.

Ids, event types, data and file names follow Ion's one set of rules (`ion.core.identifiers`),
which the management server applies to every request: a value that breaks one is refused with
a one-line `invalid request: <field>: ...` error. Only what cannot even be sent is checked
here: text that is not valid UTF-8 (bytes of another encoding in an argument or a file name).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ion.cli.commands._common import call, key_values
from ion.cli.errors import CliError
from ion.cli.main import connection_options
from ion.cli.output import as_data, output_option, render, render_one
from ion.proto.v1 import events_pb2

PEEK_COLUMNS = ("sequence_number", "message_id", "event_type", "delivery_count", "enqueued_at")
DLQ_COLUMNS = ("module", "message_id", "event_type", "correlation_id", "reason", "description")
MAX_FILE_BYTES = 60 * 1024 * 1024
F = TypeVar("F", bound=Callable[..., Any])


def _note_ignored(name: str, value: Any) -> None:
    if value:
        click.echo(
            f"ion: note: {name} is ignored; events go through the management server", err=True
        )


def _amqp_ignored(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    root = ctx.find_root()
    if value and not root.meta.get("ion.amqp-noted"):
        root.meta["ion.amqp-noted"] = True  # one note, however often the flag is given
        _note_ignored("--amqp-connection-string", value)


def amqp_option(func: F) -> F:
    """2018's `--amqp-connection-string` (persistent on `ion event`, so accepted after every
    event command too): hidden, ignored with a note."""
    return click.option(
        "--amqp-connection-string",
        hidden=True,
        default=None,
        expose_value=False,
        callback=_amqp_ignored,
        help="2018; ignored.",
    )(func)


@click.group()
@connection_options
@amqp_option
def event() -> None:
    """Raise events, read them and handle dead letters."""


def _text(value: str, what: str) -> str:
    """Return `value` if it can be sent (valid UTF-8 text), else a one-line CliError."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise CliError(
            f"{what} {shown!r} is not valid UTF-8 text; Ion ids, data and file names are UTF-8"
        ) from err
    return value


def _read_files(paths: tuple[Path, ...]) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    total = 0
    for path in paths:
        try:
            content = path.read_bytes()
        except OSError as err:
            raise CliError(f"file {path} cannot be read: {err}") from err
        total += len(content)
        if total > MAX_FILE_BYTES:
            raise CliError(
                f"files add up to more than {MAX_FILE_BYTES // (1024 * 1024)} MiB; upload large"
                " files with the front API (POST /events/<type>, multipart)"
            )
        files.append((_text(path.name, "--file name"), content))
    return files


@event.command()
@connection_options
@amqp_option
@click.option("--type", "--event-type", "event_type", required=True, help="Event type (topic).")
@click.option("--data", "data_items", multiple=True, help="key=value data (repeatable).")
@click.option(
    "--file",
    "file_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File to attach (repeatable); modules get it in in/data.",
)
@click.option("--correlation-id", default="", help="Continue this flow [a new flow].")
@click.option("--event-name", hidden=True, default=None, help="2018; ignored.")
@click.option("--event-id", hidden=True, default=None, help="2018; ignored.")
@click.option("--parent-event-id", hidden=True, default=None, help="2018; ignored.")
@output_option
def create(
    event_type: str,
    data_items: tuple[str, ...],
    file_paths: tuple[Path, ...],
    correlation_id: str,
    event_name: str | None,
    event_id: str | None,
    parent_event_id: str | None,
    fmt: str,
) -> None:
    """Raise a root event with data and files; prints the event (ids on stderr for tracing)."""
    for name, value in (
        ("--event-name", event_name),
        ("--event-id", event_id),
        ("--parent-event-id", parent_event_id),
    ):
        _note_ignored(name, value)
    _text(event_type, "--type")
    _text(correlation_id, "--correlation-id")
    data = [
        (_text(k, "--data key"), _text(v, f"--data value of {k!r}"))
        for k, v in key_values(data_items, flag="--data")
    ]
    names = [_text(p.name, "--file name") for p in file_paths]
    if len(set(names)) != len(names):
        raise click.BadParameter("two files have the same name", param_hint="--file")
    files = _read_files(file_paths)
    reply = call(
        lambda client: client.publish(
            event_type, data=data, files=files, correlation_id=correlation_id
        )
    )
    info = as_data(reply.event)
    if fmt == "table":
        render_one(info, fmt, fields=("event_id", "correlation_id", "event_type", "published_by"))
    else:
        render_one(json.loads(reply.event_json), fmt)
    click.echo(f"trace it: ion trace flow -c {reply.event.correlation_id}", err=True)
    click.echo(
        f"follow it: ion flow get {reply.event.correlation_id[:8]} --watch"
        f" (logs: ion logs {reply.event.correlation_id[:8]} -f)",
        err=True,
    )


def _peek_rows(messages: list[events_pb2.BusMessage]) -> list[dict[str, Any]]:
    rows = []
    for message in messages:
        row = as_data(message)
        try:
            body = json.loads(message.body)
            row["event_type"] = body.get("type", "")
            row["event"] = body
        except (json.JSONDecodeError, AttributeError):
            row["event_type"] = ""
        rows.append(row)
    return rows


@event.command()
@connection_options
@amqp_option
@click.option(
    "--event-id",
    default="",
    help="Event id (printed by `event create`), or a unique prefix (a flow tree's 8 characters).",
)
@click.option("--correlation-id", default="", help="The event's flow (narrows the search).")
@click.option("--sub-name", default="", help="2018: read the next message of this subscription.")
@click.option("--event-type", default="", help="2018: the subscription's event type.")
@output_option
def get(event_id: str, correlation_id: str, sub_name: str, event_type: str, fmt: str) -> None:
    """Show an event and its metadata (data and files)."""
    if not event_id and sub_name and event_type:
        click.echo(
            "ion: note: showing the next message without taking it (Ion never dequeues a"
            " module's messages from the CLI)",
            err=True,
        )
        request = events_pb2.PeekRequest(
            event_type=event_type, subscription=sub_name, max_messages=1
        )
        reply = call(lambda client: client.peek(request))
        if not reply.messages:
            raise CliError(f"subscription {sub_name!r} of {event_type!r} holds no message")
        render_one(_peek_rows(list(reply.messages))[0], fmt)
        return
    if not event_id:
        raise click.UsageError("give --event-id (or the 2018 --sub-name with --event-type)")
    _text(event_id, "--event-id")
    _text(correlation_id, "--correlation-id")
    got = call(lambda client: client.get_event(event_id, correlation_id=correlation_id))
    data = as_data(got.event)
    data["files"] = list(got.files)
    data["data"] = {kv.key: kv.value for kv in got.data}
    data["files_prefix"] = got.files_prefix
    render_one(data, fmt)


@event.command()
@connection_options
@amqp_option
@click.option("--module", default="", help="Peek this module's subscription (id or name).")
@click.option("--sub-name", default="", help="Subscription name (with --event-type).")
@click.option("--event-type", default="", help="Topic of --sub-name.")
@click.option(
    "--max", "max_messages", type=int, default=10, show_default=True, help="Messages to show."
)
@click.option("--dead-letter", is_flag=True, help="Peek the dead-letter queue instead.")
@output_option
def peek(
    module: str, sub_name: str, event_type: str, max_messages: int, dead_letter: bool, fmt: str
) -> None:
    """Show messages waiting on a subscription without taking them."""
    if not module and not (sub_name and event_type):
        raise click.UsageError("give --module, or --sub-name with --event-type")
    request = events_pb2.PeekRequest(
        module=module,
        subscription=sub_name,
        event_type=event_type,
        max_messages=max_messages,
        dead_letter=dead_letter,
    )
    reply = call(lambda client: client.peek(request))
    render(_peek_rows(list(reply.messages)), fmt, columns=PEEK_COLUMNS)


@event.group()
@connection_options
@amqp_option
def dlq() -> None:
    """Dead-lettered events: list them with reasons, replay them."""


@dlq.command("list")
@connection_options
@amqp_option
@click.option("--module", default="", help="Only this module (id or name) [all].")
@click.option("--max", "max_messages", type=int, default=100, show_default=True, help="Per module.")
@output_option
def dlq_list(module: str, max_messages: int, fmt: str) -> None:
    """List dead-lettered messages and why they were given up on."""
    reply = call(lambda client: client.list_dead_letters(module=module, max_messages=max_messages))
    rows = []
    for item in reply.dead_letters:
        rows.append(
            {
                "module": item.module,
                "message_id": item.message.message_id,
                "event_id": item.event.event_id,
                "event_type": item.event.event_type,
                "correlation_id": item.event.correlation_id,
                "reason": item.message.dead_letter_reason,
                "description": item.message.dead_letter_description,
                "delivery_count": item.message.delivery_count,
                "enqueued_at": item.message.enqueued_at,
            }
        )
    render(rows, fmt, columns=DLQ_COLUMNS)


@dlq.command("replay")
@connection_options
@amqp_option
@click.option("--module", required=True, help="Module id or name.")
@click.option("--message-id", required=True, help="Message id from `ion event dlq list`.")
def dlq_replay(module: str, message_id: str) -> None:
    """Send a dead-lettered message back to its module for a fresh round of attempts."""
    reply = call(lambda client: client.replay_dead_letter(module=module, message_id=message_id))
    click.echo(f"replayed {reply.message_id} to module {reply.module}")
