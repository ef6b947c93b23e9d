"""The images' requirement files: current, each pin exactly the lock's, the handler's lean.

No Docker engine needed: these read files only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQS = ROOT / "deployment" / "docker" / "requirements"
PIN = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+ \\\n(?:    --hash=sha256:[0-9a-f]{64}(?: \\\n|\n))+", re.M
)


def _blocks(text: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(0).rstrip("\n") for m in PIN.finditer(text)}


def test_the_requirement_files_are_what_the_generator_makes_of_the_lock() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "docker" / "requirements.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["handler", "dispatcher", "management", "cli", "examples"])
def test_every_pin_is_the_lock_s_own_with_all_its_hashes(name: str) -> None:
    lock = _blocks((ROOT / "requirements" / "lock.txt").read_text())
    text = (REQS / f"{name}.txt").read_text()
    mine = _blocks(text)
    assert mine, f"{name}.txt pins nothing"
    pins = [line for line in text.splitlines() if "==" in line and not line.startswith("#")]
    assert len(pins) == len(mine), "a pin without hashes"
    for dist, block in mine.items():
        assert block == lock[dist], f"{name}.txt: {dist} differs from requirements/lock.txt"


def test_the_handler_carries_no_kubernetes_or_grpc_and_the_services_do() -> None:
    def dists(name: str) -> set[str]:
        return set(_blocks((REQS / f"{name}.txt").read_text()))

    assert not dists("handler") & {"kubernetes", "grpcio", "grpcio-tools"}
    assert {"azure-storage-blob", "pydantic", "click"} <= dists("handler")
    # Job pods export their spans over OTLP/HTTP (protobuf on the wire, no gRPC).
    assert {"opentelemetry-exporter-otlp-proto-http", "protobuf"} <= dists("handler")
    assert "kubernetes" in dists("dispatcher") and "grpcio" not in dists("dispatcher")
    assert {"kubernetes", "grpcio"} <= dists("management")
    assert {"numpy", "pillow", "scikit-learn"} <= dists("examples")
    assert not dists("examples") & {"pydantic", "kubernetes", "grpcio"}
