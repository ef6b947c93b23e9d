"""Finding and running the `ion-management` command (the CLI never imports the server)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ion.cli.errors import CliError


def management_executable() -> str:
    """Return the path of `ion-management` (beside this Python first, then on PATH).

    Raises:
        CliError: it is not installed.
    """
    beside = Path(sys.executable).parent / "ion-management"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ion-management")
    if found is None:
        raise CliError(
            "`ion-management` is not installed; install the ion-management package next to"
            " ion-cli (it runs the server and makes certificates)"
        )
    return found
