"""Dispatch rules across Azure Batch and the local executor in one pipeline, as a user runs it.

`ion-management serve` serves providers `local` and `azurebatch` (the Batch fake, whose pool is
a GPU pool) with `ION_DISPATCHER__ROUTES_TO=local`. The pipeline is examples/dispatch-rules,
created module by module with `ion module create` and 2018's flags (`-n -i -o`, `-m` and `-p
azurebatch` for `transcode`) plus `--when` and `--route` from the pipeline file, with two
changes: `transcode` takes every event with a file (`files.count > 0`, the cloud variant's
`when`), so the small files reach its routes too, and its big-file route names `azurebatch`
instead of `local`. One root event makes a 1100 KiB video, a note and a photo:

- the video (> 1 MiB) takes route 0: one Batch task in `ion-transcode` on the GPU pool whose
  module container asks for `--gpus all` (the fake's GPU node records it, see
  tests/fakes/batch/_docker_shim.py);
- the note and the photo take route 1: the local executor, no Batch task;
- `ion trace flow -o json` records each attempt's route, the tree shows both, the flow succeeds
  and its outputs are stored.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from ion.core import Resources, RunStatus
from ion.core.flow import Flow
from ion.core.modules import ModuleSpec, PipelineSpec
from ion.dispatcher.executors.azurebatch import batch_id
from ion.management.control import ControlPlane
from tests.containers.fixtures import LOCAL_BASE, DockerEngine, IonImages, build_images
from tests.e2e_support import (
    Management,
    batch_settings,
    correlation_id,
    management_server,
    runs_by_mime,
    tree_text,
    wait_flow,
)
from tests.fakes.batch import ContainerRun, FakeBatch, running_fake_batch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dispatch-rules"
POOL = "ion-gpu-pool"
BIG = "files.size > 1MiB"


def _base_image() -> str:
    return os.environ.get("BASE_IMAGE", "") or LOCAL_BASE


def _pipeline() -> PipelineSpec:
    """examples/dispatch-rules with transcode's two changes (see the module's docstring)."""
    pipeline = PipelineSpec.load(EXAMPLE / "pipeline.yaml")
    modules = []
    for spec in pipeline.modules:
        if spec.name == "transcode":
            assert spec.routes[0].when == BIG and spec.routes[1].executor == "local", spec
            routes = [spec.routes[0].model_copy(update={"executor": "azurebatch"}), spec.routes[1]]
            spec = spec.model_copy(update={"when": "files.count > 0", "routes": routes})
        modules.append(spec)
    return pipeline.model_copy(update={"modules": modules})


def _create_args(spec: ModuleSpec) -> list[str]:
    """`ion module create` for a module of the pipeline: 2018's flags, then --when and --route;
    `transcode` on Azure Batch (`-p azurebatch`, its image the base image with python)."""
    args = ["module", "create", "-n", spec.name, "-i", spec.subscribes_to]
    if spec.publishes:
        args += ["-o", ",".join(spec.publishes)]
    args += ["--command", shlex.join(spec.command), "--working-dir", str(EXAMPLE)]
    args += [f"--env={k}={v}" for k, v in spec.env.items()]
    if spec.when:
        args += ["--when", spec.when]
    for route in spec.routes:
        asked = [
            f"{name}={value}"
            for name, value in (
                ("cpu", route.resources.cpu),
                ("memory", route.resources.memory),
                ("gpu", route.resources.gpu),
            )
            if value
        ]
        args += ["--route", f"{route.when or '*'} => {','.join([route.executor, *asked])}"]
    if spec.name == "transcode":
        args += ["-m", _base_image(), "-p", "azurebatch"]
    else:
        args += ["-p", "local"]
    return args


@pytest.fixture(scope="module")
def handler_image(docker_engine: DockerEngine) -> IonImages:
    """The handler image (a cache hit after CI's image step)."""
    return build_images(docker_engine, base=_base_image(), only=["handler"])


@pytest.fixture
def fake(tmp_path: Path, docker_engine: DockerEngine) -> Iterator[FakeBatch]:
    with running_fake_batch(
        tmp_path / "nodes", pools={}, gpu_pools=(POOL,), docker_host=docker_engine.host
    ) as batch:
        yield batch


@pytest.fixture
def management(fake: FakeBatch, handler_image: IonImages, tmp_path: Path) -> Iterator[Management]:
    env = {
        "ION_MANAGEMENT__PROVIDERS": "local,azurebatch",
        "ION_DISPATCHER__ROUTES_TO": "local",
        **batch_settings(
            fake,
            pool=POOL,
            handler_image=handler_image.tag("handler"),
            host_path_mounts=[tmp_path / "home", EXAMPLE],
        ),
    }
    with management_server(tmp_path, env) as found:
        yield found


async def test_a_big_video_runs_on_the_batch_gpu_pool_and_small_files_locally(
    fake: FakeBatch, management: Management
) -> None:
    for spec in _pipeline().modules:
        management.ion(*_create_args(spec))
    listed = {
        m["name"]: m for m in json.loads(management.ion("module", "list", "-o", "json").stdout)
    }
    assert sorted(listed) == ["ingest", "summarise", "transcode"]

    raised = management.ion(
        "event", "create", "--type", "media.submitted", "--data", "video_kib=1100"
    )
    flow = await wait_flow(management.settings, correlation_id(raised), timeout=240)
    assert flow.succeeded, flow.model_dump_json(indent=2)

    # the flow as `ion trace flow -o json` gives it: each attempt's route
    shown = Flow.model_validate_json(
        management.ion("trace", "flow", "-c", flow.correlation_id, "-o", "json").stdout
    )
    transcode = runs_by_mime(shown, "transcode")
    assert {m: r.status for m, r in transcode.items()} == {
        "video/mp4": RunStatus.SUCCEEDED,
        "text/plain": RunStatus.SUCCEEDED,
        "image/png": RunStatus.SUCCEEDED,
    }
    video = transcode["video/mp4"].attempts[-1]
    assert video.route is not None
    assert (video.route.index, video.route.executor, video.route.when) == (0, "azurebatch", BIG)
    assert video.route.resources == Resources(gpu=1)
    small = [transcode[m].attempts[-1] for m in ("text/plain", "image/png")]
    for attempt in small:
        assert attempt.route is not None
        assert (attempt.route.index, attempt.route.executor) == (1, "local")
        assert attempt.route.resources == Resources(cpu="500m") and not attempt.route.when
    summarise = runs_by_mime(shown, "summarise")
    assert summarise["text/plain"].status == RunStatus.SUCCEEDED
    assert summarise["video/mp4"].status == RunStatus.FILTERED

    # the video's attempt was the one Batch task: on the GPU pool, its module container with
    # --gpus all (prepare and commit without); the small files' attempts never reached Batch
    (task,) = fake.ran
    assert (task.job_id, task.pool_id) == ("ion-transcode", POOL)
    assert task.task_id == batch_id(video.id) and task.exit_code == 0
    assert "--gpus all" in task.command_line
    assert task.container_runs == (
        ContainerRun("run", management.settings.azurebatch.handler_image, ()),
        ContainerRun("run", _base_image(), ("all",)),
        ContainerRun("run", management.settings.azurebatch.handler_image, ()),
    )
    assert all(batch_id(a.id) != task.task_id for a in small)
    added = [e for e in fake.log if e.method == "POST" and e.path.endswith("/tasks")]
    assert [e.path for e in added] == ["/jobs/ion-transcode/tasks"]
    assert sorted(fake.jobs) == ["ion-transcode"]

    # the module's insights say what each run received; every output is stored
    bytes_by_mime = {
        m: next(kv.value for kv in r.insights if kv.key == "bytes") for m, r in transcode.items()
    }
    assert bytes_by_mime["video/mp4"] == str(1100 * 1024)
    assert int(bytes_by_mime["text/plain"]) < 1024 and int(bytes_by_mime["image/png"]) < 1024
    outputs = [key for run in shown.runs() for key in run.outputs]
    assert len(outputs) == 3  # ingest's clip.mp4, notes.txt, photo.png
    async with ControlPlane(management.settings) as platform:
        sizes = {key.rsplit("/", 1)[1]: (await platform.blobs.stat(key)).size for key in outputs}
    assert sizes["clip.mp4"] == 1100 * 1024 and sizes["notes.txt"] > 0

    # the tree (ion trace flow) shows both routes
    tree = management.ion("trace", "flow", "-c", flow.correlation_id).stdout
    assert f"route 0 → azurebatch (gpu=1) when {BIG}" in tree
    assert tree.count("route 1 → local (cpu=500m)") == 2
    assert tree_text(shown).count("→ azurebatch") == 1
