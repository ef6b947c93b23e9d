"""A real Jaeger (v1.76.0, built by tools/otel-bins/build.sh) on loopback ports, in memory.

`.ci/run` exports ``ION_JAEGER=<path>``; without it (a local run) the tests ask the build
script for a cached binary (``--cached-only``, never a build). A missing binary skips the tests
with the command that builds it, unless ``ION_REQUIRE_OTEL_TOOLS=1`` (CI), where it is a
failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "otel-bins" / "build.sh"
REQUIRE = "ION_REQUIRE_OTEL_TOOLS"

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query_port}
    grpc:
      endpoint: 127.0.0.1:{query_grpc_port}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_port}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def jaeger_binary() -> Path:
    """Return the Jaeger binary, or skip (fail when ION_REQUIRE_OTEL_TOOLS=1) without it."""
    path = os.environ.get("ION_JAEGER", "")
    if not path:
        try:
            done = subprocess.run(
                [str(BUILD_SCRIPT), "--cached-only"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            for line in done.stdout.splitlines():
                if line.startswith("ION_JAEGER="):
                    path = line.split("=", 1)[1]
        except (OSError, subprocess.TimeoutExpired):
            path = ""
    if path and os.access(path, os.X_OK):
        return Path(path)
    reason = (
        "Jaeger v1.76.0 is not built (tools/otel-bins/build.sh: a Go build, 37 min on 2 busy cores)"
    )
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{REQUIRE}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Jaeger:
    """A running Jaeger: where spans go in (OTLP/HTTP) and where they are read (query API)."""

    otlp_endpoint: str
    query_url: str
    log: Path

    def get(self, path: str, **params: str) -> Any:
        """GET a query API path; return its JSON."""
        url = f"{self.query_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.loads(answer.read())

    def traces(self, service: str) -> list[dict[str, Any]]:
        """Every trace that has a span of `service` (the query API's `data`)."""
        return list(self.get("/api/traces", service=service, limit="1000", lookback="1h")["data"])

    def services(self) -> list[str]:
        """Services that sent spans."""
        return list(self.get("/api/services")["data"] or [])


@contextmanager
def running_jaeger(binary: Path, workdir: Path) -> Iterator[Jaeger]:
    """Start Jaeger with in-memory storage on free loopback ports; stop it afterwards."""
    otlp, query, query_grpc = _free_port(), _free_port(), _free_port()
    config = workdir / "jaeger.yaml"
    config.write_text(CONFIG.format(otlp_port=otlp, query_port=query, query_grpc_port=query_grpc))
    log = workdir / "jaeger.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
    jaeger = Jaeger(
        otlp_endpoint=f"http://127.0.0.1:{otlp}",
        query_url=f"http://127.0.0.1:{query}",
        log=log,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"jaeger exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
                )
            try:
                jaeger.services()
                with socket.create_connection(("127.0.0.1", otlp), timeout=1):
                    break
            except (OSError, urllib.error.URLError, ValueError):
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"jaeger did not answer in 60 s:\n{log.read_text()[-4000:]}"
                    ) from None
                time.sleep(0.2)
        yield jaeger
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
