"""One way to print data: `render` for listings, `render_one` for a single object.

`-o table` (default) is for people: a rich table, fixed width when stdout is not a terminal
so pipes never wrap. `-o json` and `-o yaml` are for scripts: the shapes documented in
docs/cli.md are a stable contract. Data goes to stdout; progress and errors go to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click
import yaml
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "yaml")


class _NoAliases(yaml.SafeDumper):
    """YAML without &anchors/*aliases: repeated values are written out again."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


PIPE_WIDTH = 200


def output_option(func: Any) -> Any:
    """Add `-o/--output table|json|yaml`."""
    return click.option(
        "-o",
        "--output",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(func)


def console(*, stderr: bool = False) -> Console:
    """Return a console on stdout (or stderr), wide when not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def _value(field: Any, value: Any) -> Any:
    # `field` is a FieldDescriptor (pure-Python or upb; the stubs type them apart)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return as_data(value)
    if field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    return value


def as_data(message: Message) -> dict[str, Any]:
    """Return a protobuf message as plain data: .proto field names, defaults kept, numbers as
    numbers (the JSON mapping of protobuf would print 64-bit integers as strings)."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _value(entry, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        elif field.has_presence and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _value(field, value)
    return out


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


def _dump(data: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(
            yaml.dump(data, Dumper=_NoAliases, sort_keys=False, allow_unicode=True), nl=False
        )


def render(rows: Sequence[Mapping[str, Any]], fmt: str, *, columns: Sequence[str]) -> None:
    """Print rows: a table of `columns` (with `-o table`), or every field as JSON/YAML."""
    if fmt != "table":
        _dump([dict(r) for r in rows], fmt)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column.upper().replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console().print(table)


def render_one(data: Mapping[str, Any], fmt: str, *, fields: Sequence[str] | None = None) -> None:
    """Print one object: `FIELD  value` lines (with `-o table`), or JSON/YAML."""
    if fmt != "table":
        _dump(dict(data), fmt)
        return
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in fields or list(data):
        table.add_row(key, _cell(data.get(key)))
    console().print(table)
