"""Management API: ModuleService.List over mutual TLS, calls/s and p99, from another process.

Ion: `ion-management up` (the real embedded platform; certificates made on first run) runs in
a subprocess with 10 live modules; this process drives List with 4 concurrent callers on one
mTLS channel.

Baseline: the gRPC health Check on the same channel and server (same TLS, same transport, no
registry or store work), measured in alternating one-second rounds with List so that anything
else loading the machine hits both alike. The ratio is what List costs beyond a bare RPC.
Targets: >= 1000 calls/s and p99 < 10 ms.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from _common import VENV_BIN, clean_env, note, parse_args, report, scratch
from grpc_health.v1 import (  # type: ignore[import-untyped]  # no type information
    health_pb2,
    health_pb2_grpc,
)

from ion.proto import module_pb2, module_pb2_grpc

MODULES = 10
CONCURRENCY = 4
READY = re.compile(r"management API on [\d.]+:(\d+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start_server(home: Path) -> tuple[Any, int]:
    proc = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "ion-management"),
        "--home",
        str(home),
        "up",
        "--port",
        str(_free_port()),
        "--front-api-port",
        str(_free_port()),
        env=clean_env(GRPC_VERBOSITY="ERROR", ION_TELEMETRY__LOG_LEVEL="WARNING"),
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


async def _drive(call: Callable[[], Awaitable[Any]], *, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(latencies), latencies


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def main(*, rounds: int, keep: bool) -> None:
    """Run the benchmark and print its result lines."""
    with scratch("management", keep=keep) as home:
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
                for i in range(MODULES):
                    await stub.Create(
                        module_pb2.ModuleCreateRequest(
                            modulename=f"bench-{i}",
                            eventsubscriptions=f"bench.in.{i}",
                            eventpublications="bench.out",
                            command=["true"],
                        ),
                        timeout=10,
                    )

                async def list_call() -> Any:
                    reply = await stub.List(module_pb2.ModuleListRequest(), timeout=10)
                    assert len(reply.names) == MODULES
                    return reply

                async def health_call() -> Any:
                    return await health.Check(health_pb2.HealthCheckRequest(), timeout=10)

                for call in (list_call, health_call):  # warm-up
                    await _drive(call, seconds=0.5)
                counts = {"list": 0, "health": 0}
                latencies: dict[str, list[float]] = {"list": [], "health": []}
                for _ in range(rounds):
                    for name, call in (("list", list_call), ("health", health_call)):
                        count, lat = await _drive(call, seconds=1.0)
                        counts[name] += count
                        latencies[name].extend(lat)
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    note(
        f"{MODULES} modules, {CONCURRENCY} concurrent callers, {rounds} rounds of 1 s each;"
        f" baseline: grpc.health.v1 Check on the same mTLS channel; load average"
        f" {os.getloadavg()[0]:.2f}"
    )
    list_rate, health_rate = counts["list"] / rounds, counts["health"] / rounds
    report(
        "management_list_throughput",
        list_rate,
        "calls/s",
        baseline=health_rate,
        target=">=1000",
    )
    report(
        "management_list_p99",
        _p99(latencies["list"]) * 1000,
        "ms",
        baseline=_p99(latencies["health"]) * 1000,
        target="<10",
    )
    report(
        "management_list_p50",
        statistics.median(latencies["list"]) * 1000,
        "ms",
        baseline=statistics.median(latencies["health"]) * 1000,
    )


if __name__ == "__main__":
    args = parse_args(__doc__.splitlines()[0])
    asyncio.run(main(rounds=2 if args.quick else 5, keep=args.keep))
