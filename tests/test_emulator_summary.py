"""Skipped Azure emulator suites are never silent: the pytest summary names them and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_the_summary_names_the_skipped_emulator_suites_and_why(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ION_REQUIRE_EMULATORS"}
    env["PATH"] = str(tmp_path)  # no node here: the emulators cannot run
    suite = ["core/tests/azure/test_cosmos_meta.py", "-k", "OnTestServer"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suite],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Azure emulator suites skipped" in out, out
    assert "core/tests/azure/test_cosmos_meta.py:" in out, out
    assert "why: node is not on PATH" in out, out
    assert "ION_REQUIRE_EMULATORS=1" in out, out
