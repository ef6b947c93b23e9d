"""Benchmark: ModuleService.List over mutual TLS, from a client in another process.

Starts `ion-management up` (real embedded platform, certificates made on first run) in a
temporary home, creates a few modules, then drives List with concurrent callers on one mTLS
channel for a fixed time and reports calls/s and latency percentiles. The same-run baseline is
the gRPC health Check on the same channel (same TLS, no store access), so the ratio shows what
List itself costs. Prints `name value unit` lines. Targets: >= 1000 calls/s, p99 < 10 ms.

Usage: python bench/bench_management.py [--seconds 5] [--concurrency 4] [--modules 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from grpc_health.v1 import (  # type: ignore[import-untyped]  # no type information
    health_pb2,
    health_pb2_grpc,
)

from ion.proto import module_pb2, module_pb2_grpc

TARGET_CALLS_PER_SECOND = 1000.0
TARGET_P99_MS = 10.0
READY = re.compile(r"management API on [\d.]+:(\d+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start_server(home: Path) -> tuple[Any, int]:
    exe = Path(sys.executable).parent / "ion-management"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env.update({"GRPC_VERBOSITY": "ERROR", "ION_TELEMETRY__LOG_LEVEL": "WARNING"})
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        "--home",
        str(home),
        "up",
        "--port",
        str(_free_port()),
        "--front-api-port",
        str(_free_port()),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise SystemExit("ion-management exited before serving")
            if match := READY.search(line):
                return proc, int(match[1])


async def _drive(
    call: Callable[[], Awaitable[Any]], *, seconds: float, concurrency: int
) -> tuple[int, list[float], float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies, time.perf_counter() - began


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _report(name: str, count: int, latencies: list[float], elapsed: float) -> float:
    rate = count / elapsed
    print(f"{name}_calls_per_second {rate:.0f} calls/s")
    print(f"{name}_p50 {statistics.median(latencies) * 1000:.2f} ms")
    print(f"{name}_p99 {_percentile(latencies, 0.99) * 1000:.2f} ms")
    return rate


async def main(seconds: float, concurrency: int, modules: int) -> int:
    """Run the benchmark; return 0."""
    with tempfile.TemporaryDirectory(prefix="ion-bench-") as tmp:
        home = Path(tmp)
        proc, port = await _start_server(home)
        try:
            certs = home / "certs"
            creds = grpc.ssl_channel_credentials(
                root_certificates=(certs / "ca.pem").read_bytes(),
                private_key=(certs / "client-key.pem").read_bytes(),
                certificate_chain=(certs / "client.pem").read_bytes(),
            )
            async with grpc.aio.secure_channel(f"localhost:{port}", creds) as channel:
                stub = module_pb2_grpc.ModuleServiceStub(channel)
                health = health_pb2_grpc.HealthStub(channel)
                for i in range(modules):
                    await stub.Create(
                        module_pb2.ModuleCreateRequest(
                            modulename=f"bench-{i}",
                            eventsubscriptions=f"bench.in.{i}",
                            eventpublications="bench.out",
                            command=["true"],
                        ),
                        timeout=10,
                    )
                listed = await stub.List(module_pb2.ModuleListRequest(), timeout=10)
                assert len(listed.names) == modules

                async def list_call() -> Any:
                    return await stub.List(module_pb2.ModuleListRequest(), timeout=10)

                async def health_call() -> Any:
                    return await health.Check(health_pb2.HealthCheckRequest(), timeout=10)

                for call in (list_call, health_call):  # warm-up
                    await _drive(call, seconds=0.5, concurrency=concurrency)
                # Alternate one-second rounds of List and the baseline, so load from anything
                # else on the machine hits both alike.
                totals: dict[str, list[Any]] = {
                    "list": [0, [], 0.0],
                    "health_baseline": [0, [], 0.0],
                }
                for _ in range(max(1, round(seconds))):
                    for name, call in (("list", list_call), ("health_baseline", health_call)):
                        count, latencies, elapsed = await _drive(
                            call, seconds=1.0, concurrency=concurrency
                        )
                        totals[name][0] += count
                        totals[name][1].extend(latencies)
                        totals[name][2] += elapsed
                print(f"modules_listed {modules} modules")
                print(f"concurrency {concurrency} callers")
                print(f"loadavg_1m {os.getloadavg()[0]:.2f} load")
                list_rate = _report("list", *totals["list"])
                health_rate = _report("health_baseline", *totals["health_baseline"])
                print(f"list_vs_health_throughput_ratio {list_rate / health_rate:.2f} ratio")
                list_p99 = _percentile(totals["list"][1], 0.99) * 1000
                met = list_rate >= TARGET_CALLS_PER_SECOND and list_p99 < TARGET_P99_MS
                print(f"targets_met {int(met)} bool")
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--modules", type=int, default=10)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.seconds, args.concurrency, args.modules)))
