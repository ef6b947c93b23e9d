"""`ion certs generate`: a local CA, a server and a client certificate for mutual TLS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from ion.cli.commands._management import management_executable
from ion.cli.errors import CliError


@click.group()
def certs() -> None:
    """Certificates for mutual TLS."""


@certs.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write them [<ION_HOME>/certs].",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Name or IP the server certificate is valid for (repeatable) [localhost, 127.0.0.1, ::1].",
)
@click.option("--force", is_flag=True, help="Replace the CA and certificates even if valid.")
def generate(directory: Path | None, hosts: tuple[str, ...], force: bool) -> None:
    """Create (or keep, while valid) ca.pem, server.pem and client.pem with their keys.

    Prints the file paths as JSON; give the server its pair with the CA, and the CLI
    --certfile client.pem --keyfile client-key.pem --cacertfile ca.pem.
    """
    argv = [management_executable(), "certs", "generate"]
    if directory is not None:
        argv += ["--dir", str(directory)]
    for host in hosts:
        argv += ["--host", host]
    if force:
        argv.append("--force")
    done = subprocess.run(argv, check=False)
    if done.returncode != 0:
        raise CliError("certificate generation failed (see the message above)")
