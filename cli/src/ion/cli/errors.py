"""The CLI's one error type: one line on stderr saying what failed and what to do, exit 1."""

from __future__ import annotations

from typing import IO, Any

import click


class CliError(click.ClickException):
    """A failure the user can act on; printed as `ion: error: <message>`, exit code 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one-line message to stderr."""
        click.echo(f"ion: error: {self.format_message()}", err=True, file=file)
