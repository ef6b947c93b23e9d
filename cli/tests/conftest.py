"""Fixtures: `ion up` running in the background for the session, and a CliRunner `ion`."""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ion.cli.main import cli

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Return check()'s first truthy result, retrying until `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout}s; last: {last!r}")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env.update(
        {"ION_HOME": str(home), "GRPC_VERBOSITY": "ERROR", "PATH": f"{BIN}:{env.get('PATH', '')}"}
    )
    env.update(extra)
    return env


@dataclass
class Ion:
    """Runs `ion` in-process with an environment of its own."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        runner = CliRunner()
        merged: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ION_")}
        merged.update(self.env)
        merged.update(env or {})
        return runner.invoke(cli, list(args), env=merged, catch_exceptions=False)


@dataclass
class Up:
    """`ion up` running in the background."""

    home: Path
    port: int
    front_api_port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def endpoint(self) -> str:
        return f"localhost:{self.port}"


@pytest.fixture(scope="session")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    home = tmp_path_factory.mktemp("ion-home")
    home.chmod(0o755)  # as an older Ion left it: `ion up` must close it (test_home_is_private)
    port, front = free_port(), free_port()
    log = home / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "ion"), "up", "--port", str(port), "--front-api-port", str(front)],
            env=clean_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Up(home=home, port=port, front_api_port=front, process=process, log=log)
    ion = Ion(home=home, env={"ION_HOME": str(home)})
    try:
        poll(
            lambda: process.poll() is not None or ion("module", "list").exit_code == 0,
            timeout=30,
            what="ion up serving",
        )
        assert process.poll() is None, log.read_text()
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


@pytest.fixture
def ion(up: Up) -> Ion:
    """`ion` configured by the cli.yaml `ion up` wrote."""
    return Ion(home=up.home, env={"ION_HOME": str(up.home)})


@dataclass(frozen=True)
class Helpers:
    """Helpers for test modules (conftest is not importable under --import-mode=importlib)."""

    poll: Callable[..., Any] = poll
    free_port: Callable[[], int] = free_port
    clean_env: Callable[..., dict[str, str]] = clean_env
    ion_for: Callable[..., Ion] = Ion


@pytest.fixture(scope="session")
def helpers() -> Helpers:
    return Helpers()
