"""`ion up`: Ion on this machine in one process, over mutual TLS, ready for the other commands.

It writes `<ION_HOME>/cli.yaml` (endpoint and the client certificate `ion-management up`
creates on first run under `<ION_HOME>/certs`) unless a config file not written by `ion up`
exists, then replaces itself with `ion-management up`, so Ctrl-C and SIGTERM reach the server
directly and shut it down cleanly.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ion.cli import config
from ion.cli.commands._management import management_executable
from ion.cli.errors import CliError

MARK = "# Written by `ion up`"


def _write_cli_config(path: Path, *, endpoint: str, home: Path) -> bool:
    if path.exists() and not path.read_text().startswith(MARK):
        return False
    certs_dir = home / "certs"
    config.write_config(
        path,
        {
            "endpoint": endpoint,
            "certfile": str(certs_dir / "client.pem"),
            "keyfile": str(certs_dir / "client-key.pem"),
            "cacertfile": str(certs_dir / "ca.pem"),
        },
    )
    return True


@click.command()
@click.option("--host", default=None, help="Listen address [127.0.0.1].")
@click.option("--port", type=int, default=None, help="Management gRPC port [9000].")
@click.option("--front-api-port", type=int, default=None, help="Front API port [9001].")
@click.option(
    "--cert-host",
    "cert_hosts",
    multiple=True,
    help="Extra name or IP for the server certificate (repeatable).",
)
def up(
    host: str | None, port: int | None, front_api_port: int | None, cert_hosts: tuple[str, ...]
) -> None:
    """Start Ion here: management API (mTLS), front API and dispatchers, until Ctrl-C."""
    executable = management_executable()
    home = config.ion_home()
    grpc_port = port or int(os.environ.get("ION_MANAGEMENT__PORT", "9000"))
    listen = host or os.environ.get("ION_MANAGEMENT__HOST", "127.0.0.1")
    connect_host = "localhost" if listen in ("127.0.0.1", "0.0.0.0", "::", "localhost") else listen
    home.mkdir(mode=0o700, parents=True, exist_ok=True)  # the server closes an existing one
    cli_config = config.default_config_path()
    if _write_cli_config(cli_config, endpoint=f"{connect_host}:{grpc_port}", home=home):
        click.echo(
            f"ion: wrote {cli_config}; `ion` commands will connect over mutual TLS", err=True
        )
    else:
        click.echo(f"ion: note: kept {cli_config} (not written by `ion up`)", err=True)
    argv = [executable, "--home", str(home), "up", "--port", str(grpc_port)]
    if host:
        argv += ["--host", host]
    if front_api_port:
        argv += ["--front-api-port", str(front_api_port)]
    for name in cert_hosts:
        argv += ["--cert-host", name]
    try:
        os.execv(executable, argv)
    except OSError as err:
        raise CliError(f"cannot start {executable}: {err}") from err
