"""Helpers shared by commands: the client for this invocation, key=value parsing, dotenv."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from ion.cli.client import IonClient
from ion.cli.errors import CliError
from ion.cli.main import State

T = TypeVar("T")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def state() -> State:
    """Return the State of the running invocation."""
    return click.get_current_context().find_root().ensure_object(State)


def call(action: Callable[[IonClient], Coroutine[Any, Any, T]]) -> T:
    """Connect (flags > env > config), run `action` with the client, disconnect."""
    current = state()
    connection = current.connection()

    async def go() -> T:
        async with IonClient(connection) as client:
            return await action(client)

    return current.run(go)


def key_values(items: Iterable[str], *, flag: str) -> list[tuple[str, str]]:
    """Parse `key=value` items (values may contain '='); raise a usage error naming the flag."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not key=value", param_hint=flag)
        pairs.append((key.strip(), value))
    return pairs


def parse_dotenv(path: Path) -> dict[str, str]:
    """Read a dotenv file (`KEY=value`, `# comments`, optional quotes and `export`)."""
    try:
        text = path.read_text()
    except OSError as err:
        raise CliError(f"config map file {path} cannot be read: {err}") from err
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise CliError(f"{path}:{number}: expected KEY=value, got {line.strip()!r}")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values
