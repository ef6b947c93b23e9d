"""What every Ion command does the same way: settings, logging and tracing, signals, failures.

`ion-dispatcher`, `ion-management` and `ion-handler` call `start` once to load settings and
install logging (text or JSON lines, with correlation id, event id and module on every record)
and tracing; `run_until_signal` runs their main coroutine with SIGTERM and Ctrl-C setting a
stop event; `fail` turns an error into one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import NoReturn, TypeVar

from ion.core import errors, logs, telemetry
from ion.core.config import IonSettings, load_settings

T = TypeVar("T")


def start(
    service: str,
    *,
    home: str | Path | None = None,
    log_level: str | None = None,
    log_format: str | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> IonSettings:
    """Load settings (flags over `ION_*` over the config file) and install logs and traces.

    Raises:
        errors.ConfigError: a setting is wrong (the message names it).
    """
    if home:
        # `--home DIR` means `ION_HOME=DIR`: DIR/config.yaml is the config file too.
        home = Path(home).expanduser().absolute()
        environ = {**(os.environ if environ is None else environ), "ION_HOME": str(home)}
    settings = load_settings(environ=environ, config_file=config_file)
    if home:
        settings = settings.model_copy(update={"home": home})
    logs.configure(
        level=log_level or settings.telemetry.log_level,
        fmt=log_format or settings.telemetry.log_format,
        service=service,
    )
    telemetry.configure_tracing(settings.telemetry.traces, service_name=service)
    return settings


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run `main(stop)` in a fresh event loop; SIGTERM and SIGINT set `stop`."""

    async def runner() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    return asyncio.run(runner())


def fail(program: str, err: BaseException) -> NoReturn:
    """Say what went wrong in one line on stderr and exit 1."""
    if isinstance(err, errors.IonError):
        message = str(err)
    else:
        message = f"unexpected {type(err).__name__}: {err} (a bug in Ion; please report it)"
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(1)
