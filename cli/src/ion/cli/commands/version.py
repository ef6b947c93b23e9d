"""`ion version`: versions of the CLI and what it speaks."""

from __future__ import annotations

import platform
from importlib import metadata

import click
import grpc  # type: ignore[import-untyped]  # grpcio ships no type information

from ion.cli.output import output_option, render_one


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


@click.command()
@output_option
def version(fmt: str) -> None:
    """Print the version of the CLI, its protocol package, gRPC and Python."""
    render_one(
        {
            "version": _version("ion-cli"),
            "proto": _version("ion-proto"),
            "grpc": str(grpc.__version__),
            "python": platform.python_version(),
            "platform": f"{platform.system().lower()}/{platform.machine()}",
        },
        fmt,
    )
