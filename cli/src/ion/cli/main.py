"""`ion`: the command line of Ion (root group, shared connection options, error handling).

Commands are noun groups with verbs (`ion module create|list|get|delete`, `ion event ...`,
`ion trace flow`) keeping the 2018 flags. The connection options (`--endpoint --certfile
--keyfile --cacertfile --timeout --insecure --config`) are accepted before or after the
command, and fall back to `ION_*` variables, then to the config file `ion up` writes.
Failures print one line to stderr and exit 1; usage errors exit 2; `--debug` shows tracebacks.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from ion.cli import config
from ion.cli.errors import CliError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_debug = False


@dataclass
class State:
    """What the root and leaf options collected for one invocation."""

    flags: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None
    debug: bool = False

    def connection(self) -> config.Connection:
        """Resolve where to connect: flags > ION_* environment > config file."""
        return config.resolve(self.flags, config_file=self.config_file)

    def run(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run one coroutine to completion (the CLI's single asyncio.run)."""
        return asyncio.run(factory())


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None or param.name is None:
        return
    state = ctx.find_root().ensure_object(State)
    if param.name == "config":
        state.config_file = Path(value).expanduser()
    else:
        state.flags[param.name] = value


def _connection_options(func: F, *, hidden: bool) -> F:
    options = [
        click.option(
            "--endpoint",
            callback=_store,
            expose_value=False,
            help=f"Management server host:port [$ION_ENDPOINT, config, {config.DEFAULT_ENDPOINT}].",
        ),
        click.option(
            "--certfile",
            callback=_store,
            expose_value=False,
            help="Client certificate (PEM) [$ION_CERTFILE, config].",
        ),
        click.option(
            "--keyfile",
            callback=_store,
            expose_value=False,
            help="Client private key (PEM) [$ION_KEYFILE, config].",
        ),
        click.option(
            "--cacertfile",
            callback=_store,
            expose_value=False,
            help="CA certificate that signed the server's [$ION_CACERTFILE, config].",
        ),
        click.option(
            "--tls-server-name",
            callback=_store,
            expose_value=False,
            help="Name to check the server's certificate against, when not the endpoint's host "
            "(a port-forward) [$ION_TLS_SERVER_NAME, config].",
        ),
        click.option(
            "--timeout",
            type=float,
            callback=_store,
            expose_value=False,
            help="Seconds to wait for the server [$ION_TIMEOUT, config, 30].",
        ),
        click.option(
            "--insecure",
            is_flag=True,
            default=None,
            callback=_store,
            expose_value=False,
            help="Connect without TLS (only to a server started with --insecure).",
        ),
        click.option(
            "--config",
            type=click.Path(dir_okay=False),
            callback=_store,
            expose_value=False,
            help="CLI config file [$ION_CLI_CONFIG, <ION_HOME>/cli.yaml].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    if hidden:
        for param in getattr(func, "__click_params__", [])[-len(options) :]:
            param.hidden = True
    return func


def connection_options(func: F) -> F:
    """Accept the shared connection options after a command too (hidden from its help)."""
    return _connection_options(func, hidden=True)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global _debug
    if value:
        _debug = True
        ctx.find_root().ensure_object(State).debug = True


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@functools.partial(_connection_options, hidden=False)
@click.option(
    "--debug",
    is_flag=True,
    callback=_set_debug,
    expose_value=False,
    is_eager=True,
    help="Show tracebacks on errors.",
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Ion: modules, events and flows of an event-driven data-processing platform."""
    ctx.ensure_object(State)


def _register() -> None:
    from ion.cli.commands import (
        apply,
        certs,
        completion,
        dev,
        event,
        module,
        pipeline,
        trace,
        up,
        version,
    )
    from ion.cli.commands import flow as flow_commands

    cli.add_command(module.module)
    cli.add_command(apply.apply)
    cli.add_command(apply.delete)
    cli.add_command(event.event)
    cli.add_command(trace.trace)
    cli.add_command(flow_commands.flow)
    cli.add_command(flow_commands.logs)
    cli.add_command(dev.dev)
    cli.add_command(pipeline.pipeline)
    cli.add_command(certs.certs)
    cli.add_command(up.up)
    cli.add_command(version.version)
    cli.add_command(completion.completion)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run `ion`; return the exit code."""
    global _debug
    _debug = os.environ.get("ION_DEBUG", "") not in ("", "0", "false")
    try:
        # Not standalone, click *returns* the code of a `click.exceptions.Exit` a command raised
        # (`trace flow` and `flow get` exit 1 or 3 so) instead of raising it; a command that
        # simply ends returns None.
        code = cli.main(args=argv, prog_name="ion", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.Abort:
        click.echo("ion: aborted", err=True)
        return 130
    except CliError as err:
        if _debug:
            traceback.print_exception(err)
        err.show()
        return err.exit_code
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except KeyboardInterrupt:
        click.echo("ion: interrupted", err=True)
        return 130
    except Exception as err:
        if _debug:
            traceback.print_exception(err)
        else:
            click.echo(
                f"ion: internal error: {type(err).__name__}: {err} (run with --debug for the"
                " traceback)",
                err=True,
            )
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
