"""Helpers shared by the end-to-end tests of the Batch executor and of dispatch rules.

- `management_server`: `ion-management serve` (mutual TLS) in a process of its own, and the
  `ion` CLI aimed at it (`Management.ion`);
- `batch_settings`: the `ION_AZUREBATCH__*` settings of an executor on the Batch fake;
- `wait_flow`: a flow read straight from the server's embedded backends once it settles;
- `correlation_id`: the flow `ion event create` started;
- `runs_by_mime`, `tree_text`: a module's runs by their event's `mime`, a flow tree as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ion.core.config import IonSettings, load_settings
from ion.core.flow import Flow, FlowModuleRun
from ion.core.flowtree import print_flow
from ion.management.control import ControlPlane
from ion.management.testing import make_test_certificates
from tests.fakes.batch import FakeBatch

BIN = Path(sys.executable).parent


def sigint_reaches_child() -> None:
    """`Popen(preexec_fn=...)` for a child a test sends Ctrl-C (SIGINT): restore its default.

    A test run started as a background job of a non-interactive shell (`(make test &)`)
    inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored, so the child would
    never see the Ctrl-C the test is about.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Management:
    """A running management server and the CLI's environment to reach it."""

    process: subprocess.Popen[bytes]
    cli_env: dict[str, str]
    log: Path
    settings: IonSettings
    """The server's settings (its embedded backends are readable from the test)."""
    front_api_port: int = 0
    """The front API's port (HTTPS on 127.0.0.1; the web console is under /ui)."""

    def ion(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the `ion` CLI against the server; fail the test on a non-zero exit."""
        done = subprocess.run(
            [str(BIN / "ion"), *args],
            env=self.cli_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"ion {' '.join(args)} exited {done.returncode}:\n{done.stderr}\n"
                f"management log:\n{self.log.read_text()[-4000:]}"
            )
        return done


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(port: int, ca: Path) -> bool:
    """The front API on 127.0.0.1:`port` answers /healthz over TLS."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/healthz", context=context, timeout=2
        ) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def management_server(tmp_path: Path, env: Mapping[str, str]) -> Iterator[Management]:
    """`ion-management serve` with `env` (its home: `tmp_path/home`), stopped at the end."""
    pki = make_test_certificates(tmp_path / "certs").pki
    port, front = free_port(), free_port()
    env = {
        "ION_HOME": str(tmp_path / "home"),
        "ION_BUS__LOCK_DURATION_SECONDS": "10",
        "ION_BUS__RECEIVE_WAIT_SECONDS": "0.3",
        **env,
    }
    Path(env["ION_HOME"]).mkdir(parents=True, exist_ok=True)
    log = tmp_path / "management.log"
    process = subprocess.Popen(
        [
            str(BIN / "ion-management"),
            "serve",
            "--port",
            str(port),
            "--front-api-port",
            str(front),
            "--certfile",
            str(pki.server.certfile),
            "--keyfile",
            str(pki.server.keyfile),
            "--cacertfile",
            str(pki.ca_cert),
        ],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    cli_env = {
        **os.environ,
        "ION_HOME": str(tmp_path / "cli-home"),
        "ION_ENDPOINT": f"127.0.0.1:{port}",
        "ION_CERTFILE": str(pki.client.certfile),
        "ION_KEYFILE": str(pki.client.keyfile),
        "ION_CACERTFILE": str(pki.ca_cert),
    }
    found = Management(process, cli_env, log, load_settings(environ=env), front_api_port=front)
    try:
        deadline = time.monotonic() + 60
        # The front API starts after the gRPC server: poll its /healthz in this process (an
        # `ion` start-up costs a second or more of CPU, which the server's start-up needs),
        # then check that the CLI gets in.
        while not _healthy(front, pki.ca_cert):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"management did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        while found.ion("module", "list", check=False).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"management did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield found
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def batch_settings(
    fake: FakeBatch,
    *,
    pool: str,
    handler_image: str,
    host_path_mounts: Sequence[Path],
    poll_seconds: float = 0.3,
) -> dict[str, str]:
    """`ION_AZUREBATCH__*` for an executor on the fake's `pool`, its jobs sharing the
    embedded backends (and any other host directory) through `host_path_mounts`."""
    return {
        "ION_AZUREBATCH__ACCOUNT_URL": fake.url,
        "ION_AZUREBATCH__ACCOUNT_NAME": fake.account,
        "ION_AZUREBATCH__ACCOUNT_KEY": fake.key,
        "ION_AZUREBATCH__CA_FILE": fake.ca_file,
        "ION_AZUREBATCH__POOL_ID": pool,
        "ION_AZUREBATCH__HANDLER_IMAGE": handler_image,
        "ION_AZUREBATCH__HOST_PATH_MOUNTS": json.dumps([str(p) for p in host_path_mounts]),
        "ION_AZUREBATCH__POLL_INTERVAL_SECONDS": f"{poll_seconds:g}",
        "ION_AZUREBATCH__DEADLINE_ALLOWANCE_SECONDS": "120",
    }


async def wait_flow(settings: IonSettings, correlation_id: str, timeout: float) -> Flow:
    """The flow once it has runs and has settled (or as it is at `timeout`)."""
    deadline = time.monotonic() + timeout
    async with ControlPlane(settings) as platform:
        while True:
            left = deadline - time.monotonic()
            flow = await platform.wait_settled(correlation_id, timeout=max(left, 1))
            if list(flow.runs()) or time.monotonic() > deadline:
                return flow
            await asyncio.sleep(0.3)


def correlation_id(raised: subprocess.CompletedProcess[str]) -> str:
    """The correlation id `ion event create` printed (`trace it: ion trace flow -c <id>`)."""
    return raised.stderr.rsplit("ion trace flow -c ", 1)[1].split()[0]


def runs_by_mime(flow: Flow, module: str) -> dict[str, FlowModuleRun]:
    """The module's runs by the `mime` data value of the event they were on."""
    out: dict[str, FlowModuleRun] = {}
    for event in flow.events():
        mime = next((kv.value for kv in event.data if kv.key == "mime"), "")
        for run in event.triggered:
            if run.module == module:
                out[mime] = run
    return out


def tree_text(flow: Flow) -> str:
    """The flow tree as plain text, wide enough for no line to wrap."""
    console = Console(width=200, record=True, color_system=None)
    print_flow(flow, console)
    return console.export_text()
