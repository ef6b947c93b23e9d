"""The example pipeline on the Azure Batch executor, as a user runs it, against the Batch fake.

`ion-management serve` (mutual TLS, provider `azurebatch`) runs the module dispatchers in its
process; `ion module create` registers the example modules with 2018's flags (`-n -i -o -m`,
half with `-p azurebatch`, half with the server's default); each module's dispatchers get one
Batch job on the fake's pool and add one task per event; each task's script runs the real
handler image's prepare, the module's real image and commit on this machine's Docker engine,
sharing the embedded backends with the management process through a host path. The flow must
complete with every output stored, each attempt must have been one task in its module's Batch
job, and deleting the modules must delete their Batch jobs.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ion.core.config import IonSettings, load_settings
from ion.core.flow import Flow
from ion.core.modules import PipelineSpec
from ion.management.control import ControlPlane
from ion.management.testing import make_test_certificates
from tests.containers.fixtures import LOCAL_BASE, DockerEngine, IonImages, build_images
from tests.fakes.batch import FakeBatch, running_fake_batch

pytestmark = pytest.mark.timeout(600)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "media-classifiers"
BIN = Path(sys.executable).parent
POOL = "ion-gpu-pool"


def _pipeline() -> PipelineSpec:
    return PipelineSpec.load(EXAMPLE / "pipeline.yaml")


@pytest.fixture(scope="module")
def batch_images(docker_engine: DockerEngine) -> IonImages:
    """The handler and example images (a cache hit after CI's image step)."""
    base = os.environ.get("BASE_IMAGE", "") or LOCAL_BASE
    wanted = ["handler", *(f"example-{m.name}" for m in _pipeline().modules)]
    return build_images(docker_engine, base=base, only=wanted)


@dataclass
class Management:
    process: subprocess.Popen[bytes]
    cli_env: dict[str, str]
    log: Path
    settings: IonSettings

    def ion(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake(tmp_path: Path, docker_engine: DockerEngine) -> Iterator[FakeBatch]:
    with running_fake_batch(
        tmp_path / "nodes", pools={POOL: {}}, docker_host=docker_engine.host
    ) as batch:
        yield batch


@pytest.fixture
def management(fake: FakeBatch, batch_images: IonImages, tmp_path: Path) -> Iterator[Management]:
    pki = make_test_certificates(tmp_path / "certs").pki
    port, front = _free_port(), _free_port()
    env = {
        "ION_HOME": str(tmp_path / "home"),
        "ION_BUS__LOCK_DURATION_SECONDS": "10",
        "ION_BUS__RECEIVE_WAIT_SECONDS": "0.3",
        "ION_MANAGEMENT__PROVIDERS": "azurebatch",
        "ION_AZUREBATCH__ACCOUNT_URL": fake.url,
        "ION_AZUREBATCH__ACCOUNT_NAME": fake.account,
        "ION_AZUREBATCH__ACCOUNT_KEY": fake.key,
        "ION_AZUREBATCH__CA_FILE": fake.ca_file,
        "ION_AZUREBATCH__POOL_ID": POOL,
        "ION_AZUREBATCH__HANDLER_IMAGE": batch_images.tag("handler"),
        "ION_AZUREBATCH__HOST_PATH_MOUNTS": json.dumps([str(tmp_path / "home")]),
        "ION_AZUREBATCH__POLL_INTERVAL_SECONDS": "0.3",
        "ION_AZUREBATCH__DEADLINE_ALLOWANCE_SECONDS": "120",
    }
    (tmp_path / "home").mkdir()
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
    found = Management(process, cli_env, log, load_settings(environ=env))
    deadline = time.monotonic() + 60
    while found.ion("module", "list", check=False).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"management did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)
    yield found
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


async def _wait_flow(settings: IonSettings, correlation_id: str, timeout: float) -> Flow:
    deadline = time.monotonic() + timeout
    async with ControlPlane(settings) as platform:
        while True:
            left = deadline - time.monotonic()
            flow = await platform.wait_settled(correlation_id, timeout=max(left, 1))
            if list(flow.runs()) or time.monotonic() > deadline:
                return flow
            await asyncio.sleep(0.3)


async def test_the_example_pipeline_runs_on_azure_batch_and_delete_removes_the_batch_jobs(
    fake: FakeBatch, management: Management, batch_images: IonImages
) -> None:
    names = []
    for i, module in enumerate(_pipeline().modules):
        args = [
            "module", "create", "-n", module.name, "-i", module.subscribes_to,
            "-o", ",".join(module.publishes), "-m", batch_images.tag(f"example-{module.name}"),
        ]  # fmt: skip
        if i % 2:  # half name the provider (2018's -p); the rest get the server's default
            args += ["-p", "azurebatch"]
        management.ion(*args)
        names.append(module.name)
    listed = json.loads(management.ion("module", "list", "-o", "json").stdout)
    assert sorted(m["name"] for m in listed) == sorted(names)

    raised = management.ion(
        "event", "create", "--type", "media.submitted", "--data", "count=6", "--data", "seed=7"
    )
    correlation_id = raised.stderr.rsplit("ion trace flow -c ", 1)[1].split()[0]
    flow = await _wait_flow(management.settings, correlation_id, timeout=420)
    assert flow.succeeded, flow.model_dump_json(indent=2)
    runs = {r.module: r for r in flow.runs()}
    assert set(runs) == set(names)
    async with ControlPlane(management.settings) as platform:
        for run in runs.values():
            assert run.outputs, run.module
            for key in run.outputs:
                assert (await platform.blobs.stat(key)).size > 0
    # one Batch job per module dispatcher, on the named pool; each attempt was one task there
    assert sorted(fake.jobs) == sorted(f"ion-{n}" for n in names)
    for name in names:
        assert fake.jobs[f"ion-{name}"].body["poolInfo"]["poolId"] == POOL
    added = [e for e in fake.log if e.method == "POST" and e.path.endswith("/tasks")]
    assert len(added) == sum(len(r.attempts) for r in runs.values())
    assert all(e.status == 201 for e in added)

    for name in names:
        management.ion("module", "delete", "-n", name)
    deadline = time.monotonic() + 30
    while fake.jobs:
        assert time.monotonic() < deadline, f"Batch jobs left after delete: {sorted(fake.jobs)}"
        await asyncio.sleep(0.2)
