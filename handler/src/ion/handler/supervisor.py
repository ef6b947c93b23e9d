"""Run a module's command as a child process with the contract's environment and a deadline.

The module gets `HANDLER_BASE_DIR` (its job directory) and its configuration as environment
variables, runs in its own process group, and is killed with its whole group at the deadline
or when the caller is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

KILL_GRACE = timedelta(seconds=2)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleExit:
    """How a module run ended."""

    exit_code: int
    timed_out: bool


def module_environment(
    base_dir: Path, config: Mapping[str, str], *, inherit: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return the module's environment: inherited PATH-like basics, its config, HANDLER_BASE_DIR."""
    source = os.environ if inherit is None else inherit
    env = {
        k: v
        for k, v in source.items()
        if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(config)
    env["HANDLER_BASE_DIR"] = str(base_dir)
    return env


def kill_group(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal the process group led by `pid`; nothing happens if it is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def run_module(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None,
    log_path: Path,
    deadline: timedelta,
) -> ModuleExit:
    """Run the module to completion or its deadline, its stdout and stderr going to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        async with asyncio.timeout(deadline.total_seconds()):
            code = await proc.wait()
        return ModuleExit(exit_code=code, timed_out=False)
    except TimeoutError:
        kill_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_GRACE.total_seconds()):
                await proc.wait()
        # The module may be gone while a child that ignores SIGTERM lives on in its group.
        kill_group(proc.pid)
        await proc.wait()
        return ModuleExit(
            exit_code=proc.returncode if proc.returncode is not None else -9, timed_out=True
        )
    finally:
        if proc.returncode is None:
            kill_group(proc.pid)
            await proc.wait()
