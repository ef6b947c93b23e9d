"""Fixtures for dispatcher tests: a dispatcher pool over embedded backends, and module scripts."""

from __future__ import annotations

import stat
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from dispatcher.tests.harness import Harness, harness
from ion.core.config import IonSettings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> IonSettings:
    """Settings with everything under tmp_path and short locks, so redelivery is quick."""
    return load_settings(
        environ={
            "ION_HOME": str(tmp_path / "home"),
            "ION_BUS__LOCK_DURATION_SECONDS": "2",
            "ION_BUS__RECEIVE_WAIT_SECONDS": "0.2",
            "ION_DISPATCHER__SHUTDOWN_GRACE_SECONDS": "5",
        }
    )


@pytest.fixture
async def platform(settings: IonSettings, tmp_path: Path) -> AsyncIterator[Harness]:
    """A running pool over embedded backends under tmp_path."""
    async with harness(settings, tmp_path) as h:
        yield h


ScriptMaker = Callable[[str, str], list[str]]


@pytest.fixture
def script(tmp_path: Path) -> ScriptMaker:
    """Write a Python module script; return its argv."""

    def make(name: str, body: str) -> list[str]:
        path = tmp_path / "modules" / f"{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "import json, os, sys, time, pathlib\nBASE = pathlib.Path(os.environ['HANDLER_BASE_DIR'])\n"
        path.write_text(header + textwrap.dedent(body))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return [sys.executable, str(path)]

    return make
