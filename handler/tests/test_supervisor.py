"""Running a module: its environment, its log, its exit code, and its whole group killed at the deadline."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

import pytest

from ion.core.testing import eventually
from ion.handler.supervisor import module_environment, run_module


def gone(pid: int) -> bool:
    """True if the process no longer runs (exited, or a zombie nobody reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


async def read_pid(path: Path) -> int:
    def written() -> str:
        return path.read_text().strip() if path.exists() else ""

    return int(await eventually(written, timeout=10))


def test_module_environment_is_minimal_plus_config_and_base_dir(tmp_path: Path) -> None:
    env = module_environment(
        tmp_path,
        {"THRESHOLD": "0.8"},
        inherit={"PATH": "/bin", "HOME": "/root", "ION_BUS__URL": "secret", "AWS_KEY": "k"},
    )
    assert env == {
        "PATH": "/bin",
        "HOME": "/root",
        "THRESHOLD": "0.8",
        "HANDLER_BASE_DIR": str(tmp_path),
    }


def test_the_base_dir_cannot_be_overridden_by_config(tmp_path: Path) -> None:
    env = module_environment(tmp_path, {"HANDLER_BASE_DIR": "/elsewhere"}, inherit={})
    assert env["HANDLER_BASE_DIR"] == str(tmp_path)


async def test_exit_code_and_output_are_recorded(tmp_path: Path) -> None:
    log = tmp_path / "module.log"
    result = await run_module(
        ["sh", "-c", 'echo "out $HANDLER_BASE_DIR $GREETING"; echo err >&2; exit 3'],
        env=module_environment(tmp_path, {"GREETING": "hi"}),
        cwd=None,
        log_path=log,
        deadline=timedelta(seconds=30),
    )
    assert result.exit_code == 3
    assert not result.timed_out
    assert log.read_text().splitlines() == [f"out {tmp_path} hi", "err"]


async def test_the_module_runs_in_the_given_directory(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    result = await run_module(
        ["sh", "-c", "pwd > where"],
        env=module_environment(tmp_path, {}),
        cwd=tmp_path / "work",
        log_path=tmp_path / "log",
        deadline=timedelta(seconds=30),
    )
    assert result.exit_code == 0
    assert (tmp_path / "work" / "where").read_text().strip() == str(tmp_path / "work")


async def test_the_deadline_kills_the_module_and_its_grandchildren(tmp_path: Path) -> None:
    script = f"sleep 1000 & echo $! > {tmp_path / 'grandchild'}; wait"
    result = await run_module(
        ["sh", "-c", script],
        env=module_environment(tmp_path, {}),
        cwd=None,
        log_path=tmp_path / "log",
        deadline=timedelta(seconds=0.5),
    )
    assert result.timed_out
    assert result.exit_code != 0
    grandchild = await read_pid(tmp_path / "grandchild")
    await eventually(lambda: gone(grandchild), timeout=5)


async def test_a_grandchild_that_ignores_sigterm_is_killed_too(tmp_path: Path) -> None:
    # The module itself dies on SIGTERM; its child ignores SIGTERM and must not outlive it.
    script = f"(trap '' TERM; exec sleep 1000) & echo $! > {tmp_path / 'stubborn'}; wait"
    result = await run_module(
        ["sh", "-c", script],
        env=module_environment(tmp_path, {}),
        cwd=None,
        log_path=tmp_path / "log",
        deadline=timedelta(seconds=0.5),
    )
    assert result.timed_out
    stubborn = await read_pid(tmp_path / "stubborn")
    try:
        await eventually(lambda: gone(stubborn), timeout=5)
    finally:
        if not gone(stubborn):
            os.kill(stubborn, 9)


async def test_a_module_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    result = await run_module(
        ["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"],
        env=module_environment(tmp_path, {}),
        cwd=None,
        log_path=tmp_path / "log",
        deadline=timedelta(seconds=0.3),
    )
    assert result.timed_out


async def test_cancelling_the_run_kills_the_group(tmp_path: Path) -> None:
    script = f"sleep 1000 & echo $! > {tmp_path / 'grandchild'}; wait"
    task = asyncio.create_task(
        run_module(
            ["sh", "-c", script],
            env=module_environment(tmp_path, {}),
            cwd=None,
            log_path=tmp_path / "log",
            deadline=timedelta(seconds=60),
        )
    )
    grandchild = await read_pid(tmp_path / "grandchild")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: gone(grandchild), timeout=5)
