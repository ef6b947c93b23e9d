"""`ion-management` as a user runs it: certificates, refusals, serving, SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import grpc

from ion.proto import module_pb2, module_pb2_grpc

EXE = str(Path(sys.executable).parent / "ion-management")
READY = re.compile(r"management API on [\d.]+:(\d+) \(([^)]+)\), front API (\S+)")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env.update({"ION_HOME": str(home), "GRPC_VERBOSITY": "ERROR"})
    return env


async def _start(home: Path, *args: str) -> tuple[Any, int, str, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        EXE, *args, env=_env(home), stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(20):
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise AssertionError(f"exited before serving: {''.join(lines)}")
            lines.append(line)
            if match := READY.search(line):
                return proc, int(match[1]), match[2], lines


async def _stop(proc: Any) -> int:
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):
        assert proc.stderr is not None
        await proc.stderr.read()
        return int(await proc.wait())


async def test_certs_generate_writes_a_pki_and_keeps_it_while_valid(tmp_path: Path) -> None:
    target = tmp_path / "certs"
    for expected_written in (True, False):
        proc = await asyncio.create_subprocess_exec(
            EXE,
            "certs",
            "generate",
            "--dir",
            str(target),
            "--host",
            "ion.example",
            env=_env(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err
        paths = json.loads(out)
        assert Path(paths["client"]["certfile"]).is_file()
        assert ("wrote" in err.decode()) is expected_written
    assert oct((target / "ca-key.pem").stat().st_mode & 0o777) == "0o600"


async def test_serve_without_certificates_fails_in_one_line(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        EXE, "serve", env=_env(tmp_path), stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "--certfile" in lines[0] and "--insecure" in lines[0]


async def test_insecure_serve_warns_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc, port, mode, lines = await _start(
        tmp_path, "serve", "--insecure", "--port", "0", "--front-api-port", "0"
    )
    try:
        assert mode == "PLAINTEXT"
        assert any("WITHOUT TLS" in line for line in lines)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = module_pb2_grpc.ModuleServiceStub(channel)
            assert (await stub.List(module_pb2.ModuleListRequest(), timeout=5)).names == []
    finally:
        assert await _stop(proc) == 0


async def test_up_creates_certificates_and_a_token_then_serves_mtls(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc, port, mode, _ = await _start(
        tmp_path, "--home", str(home), "up", "--port", "0", "--front-api-port", "0"
    )
    try:
        assert mode == "mutual TLS"
        certs = home / "certs"
        assert (home / "front-api-token").read_text().strip()
        creds = grpc.ssl_channel_credentials(
            root_certificates=(certs / "ca.pem").read_bytes(),
            private_key=(certs / "client-key.pem").read_bytes(),
            certificate_chain=(certs / "client.pem").read_bytes(),
        )
        async with grpc.aio.secure_channel(f"localhost:{port}", creds) as channel:
            stub = module_pb2_grpc.ModuleServiceStub(channel)
            assert (await stub.List(module_pb2.ModuleListRequest(), timeout=5)).names == []
    finally:
        assert await _stop(proc) == 0
