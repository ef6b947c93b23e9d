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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ion.core.modules import PipelineSpec
from ion.management.control import ControlPlane
from tests.containers.fixtures import LOCAL_BASE, DockerEngine, IonImages, build_images
from tests.e2e_support import (
    Management,
    batch_settings,
    correlation_id,
    management_server,
    wait_flow,
)
from tests.fakes.batch import FakeBatch, running_fake_batch

pytestmark = pytest.mark.timeout(600)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "media-classifiers"
POOL = "ion-gpu-pool"


def _pipeline() -> PipelineSpec:
    return PipelineSpec.load(EXAMPLE / "pipeline.yaml")


@pytest.fixture(scope="module")
def batch_images(docker_engine: DockerEngine) -> IonImages:
    """The handler and example images (a cache hit after CI's image step)."""
    base = os.environ.get("BASE_IMAGE", "") or LOCAL_BASE
    wanted = ["handler", *(f"example-{m.name}" for m in _pipeline().modules)]
    return build_images(docker_engine, base=base, only=wanted)


@pytest.fixture
def fake(tmp_path: Path, docker_engine: DockerEngine) -> Iterator[FakeBatch]:
    with running_fake_batch(
        tmp_path / "nodes", pools={POOL: {}}, docker_host=docker_engine.host
    ) as batch:
        yield batch


@pytest.fixture
def management(fake: FakeBatch, batch_images: IonImages, tmp_path: Path) -> Iterator[Management]:
    env = {
        "ION_MANAGEMENT__PROVIDERS": "azurebatch",
        **batch_settings(
            fake,
            pool=POOL,
            handler_image=batch_images.tag("handler"),
            host_path_mounts=[tmp_path / "home"],
        ),
    }
    with management_server(tmp_path, env) as found:
        yield found


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
    flow = await wait_flow(management.settings, correlation_id(raised), timeout=420)
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
