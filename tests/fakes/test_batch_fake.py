"""The Batch fake itself, through the unmodified azure-batch SDK: Shared Key checked as the
service checks it, the documented error codes, throttling the SDK retries, and tasks that really
run (exit codes, files, the wall clock, terminate). No Docker needed: tasks run plain commands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from tests.fakes.batch import (
    ContainerRun,
    FakeBatch,
    running_fake_batch,
    sign,
    string_to_sign,
    strip_gpus,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeBatch]:
    with running_fake_batch(
        tmp_path / "nodes", pools={"p1": {}}, gpu_pools=("gpu",), docker_host=""
    ) as batch:
        yield batch


def _client(fake: FakeBatch, *, key: str | None = None, account: str | None = None) -> BatchClient:
    return BatchClient(
        fake.url,
        AzureNamedKeyCredential(account or fake.account, key or fake.key),
        connection_verify=fake.ca_file,
        retry_backoff_factor=0.05,
        retry_total=4,
    )


@pytest.fixture
async def client(fake: FakeBatch) -> AsyncIterator[BatchClient]:
    found = _client(fake)
    yield found
    await found.close()


async def _wait_completed(client: BatchClient, job: str, task: str) -> models.BatchTask:
    deadline = time.monotonic() + 20
    while True:
        found = await client.get_task(job, task)
        if found.state == models.BatchTaskState.COMPLETED:
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


def test_the_string_to_sign_is_the_documented_one() -> None:
    text = string_to_sign(
        "POST",
        "/jobs",
        "api-version=2025-06-01&timeout=30",
        {"Content-Type": "application/json", "Content-Length": "12", "ocp-date": "D"},
        "acct",
    )
    assert text == (
        "POST\n\n\n12\n\napplication/json\n\n\n\n\n\n\nocp-date:D\n/acct/jobs"
        "\napi-version:2025-06-01\ntimeout:30"
    )
    # a DELETE without a body is signed with Content-Length 0, as the SDK signs it
    assert string_to_sign("DELETE", "/jobs/j", "", {}, "a").split("\n")[3] == "0"
    assert sign("a2V5", "x") != sign("a2V5", "y")


async def test_the_sdk_s_signature_is_accepted_and_a_wrong_key_or_account_is_refused(
    fake: FakeBatch, client: BatchClient
) -> None:
    pool = await client.get_pool("p1")
    assert pool.id == "p1" and pool.state == models.BatchPoolState.ACTIVE
    for bad in (_client(fake, key="d3Jvbmcga2V5"), _client(fake, account="other")):
        with pytest.raises(HttpResponseError) as refused:
            await bad.get_pool("p1")
        await bad.close()
        assert refused.value.status_code == 403
        assert (
            refused.value.error is not None and refused.value.error.code == "AuthenticationFailed"
        )
    assert [e.code for e in fake.statuses("AuthenticationFailed")] == ["AuthenticationFailed"] * 2


async def test_not_found_and_conflict_errors_have_the_service_s_codes(
    client: BatchClient,
) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        await client.get_pool("nope")
    assert missing.value.error is not None and missing.value.error.code == "PoolNotFound"
    with pytest.raises(ResourceNotFoundError) as missing:
        await client.get_job("nope")
    assert missing.value.error is not None and missing.value.error.code == "JobNotFound"
    job = models.BatchJobCreateOptions(id="j1", pool_info=models.BatchPoolInfo(pool_id="p1"))
    await client.create_job(job)
    with pytest.raises(ResourceExistsError) as exists:
        await client.create_job(job)
    assert exists.value.error is not None and exists.value.error.code == "JobExists"
    task = models.BatchTaskCreateOptions(id="t1", command_line="/bin/true")
    await client.create_task("j1", task)
    with pytest.raises(ResourceExistsError) as exists:
        await client.create_task("j1", task)
    assert exists.value.error is not None and exists.value.error.code == "TaskExists"
    with pytest.raises(HttpResponseError) as invalid:
        await client.create_task("j1", models.BatchTaskCreateOptions(id="a b", command_line="x"))
    assert invalid.value.status_code == 400
    with pytest.raises(ResourceNotFoundError) as missing:
        await client.get_task("j1", "t2")
    assert missing.value.error is not None and missing.value.error.code == "TaskNotFound"


async def test_throttling_with_retry_after_is_retried_by_the_sdk(
    fake: FakeBatch, client: BatchClient
) -> None:
    fake.throttle(1, status=429, retry_after=1)
    fake.throttle(1, status=503, retry_after=1)
    start = time.monotonic()
    assert (await client.get_pool("p1")).id == "p1"
    assert time.monotonic() - start >= 1.9  # it waited Retry-After twice
    assert [e.status for e in fake.log[-3:]] == [429, 503, 200]


async def test_a_task_runs_with_batch_s_variables_and_reports_its_exit_code_and_files(
    fake: FakeBatch, client: BatchClient
) -> None:
    await client.create_job(
        models.BatchJobCreateOptions(id="j1", pool_info=models.BatchPoolInfo(pool_id="p1"))
    )
    script = 'echo "$AZ_BATCH_TASK_ID $COLOUR"; echo oops >&2; echo w > wd.txt; exit 3'
    await client.create_task(
        "j1",
        models.BatchTaskCreateOptions(
            id="t1",
            command_line=f"/bin/sh -c '{script}'",
            environment_settings=[models.EnvironmentSetting(name="COLOUR", value="blue")],
        ),
    )
    done = await _wait_completed(client, "j1", "t1")
    assert done.execution_info is not None and done.execution_info.exit_code == 3
    assert done.execution_info.failure_info is not None
    assert done.execution_info.failure_info.code == "FailureExitCode"

    async def read(path: str) -> bytes:
        return b"".join([c async for c in await client.download_task_file("j1", "t1", path)])

    assert await read("stdout.txt") == b"t1 blue\n"
    assert await read("stderr.txt") == b"oops\n"
    assert await read("wd/wd.txt") == b"w\n"
    with pytest.raises(ResourceNotFoundError):
        await read("wd/missing")
    listed = [t.id async for t in client.list_tasks("j1", filter="state eq 'completed'")]
    assert listed == ["t1"]


async def test_the_wall_clock_and_terminate_stop_a_task(client: BatchClient) -> None:
    await client.create_job(
        models.BatchJobCreateOptions(id="j1", pool_info=models.BatchPoolInfo(pool_id="p1"))
    )
    await client.create_task(
        "j1",
        models.BatchTaskCreateOptions(
            id="slow",
            command_line="/bin/sleep 30",
            constraints=models.BatchTaskConstraints(max_wall_clock_time=timedelta(seconds=1)),
        ),
    )
    await client.create_task(
        "j1", models.BatchTaskCreateOptions(id="stopped", command_line="/bin/sleep 30")
    )
    while (await client.get_task("j1", "stopped")).state != models.BatchTaskState.RUNNING:
        await asyncio.sleep(0.05)
    await client.terminate_task("j1", "stopped")
    stopped = await _wait_completed(client, "j1", "stopped")
    assert stopped.execution_info and stopped.execution_info.failure_info
    assert stopped.execution_info.failure_info.code == "TaskEnded"
    slow = await _wait_completed(client, "j1", "slow")
    assert slow.execution_info and slow.execution_info.failure_info
    assert slow.execution_info.failure_info.code == "MaxWallClockTimeExpiry"
    with pytest.raises(ResourceExistsError):
        await client.terminate_task("j1", "slow")  # TaskCompleted
    await client.delete_task("j1", "slow")
    with pytest.raises(ResourceNotFoundError):
        await client.get_task("j1", "slow")


def test_the_gpu_nodes_docker_shim_takes_out_gpus_before_the_image_only() -> None:
    argv = ["--config", "/c", "run", "-dit", "--rm", "--gpus", "all", "-v", "/a:/b", "--gpus=1"]
    argv += ["-e", "X", "--entrypoint", "python", "img:1", "x.py", "--gpus", "2"]
    out, run = strip_gpus(argv)
    assert run == ContainerRun(command="run", image="img:1", gpus=("all", "1"))
    assert out == [
        *("--config", "/c", "run", "-dit", "--rm", "-v", "/a:/b", "-e", "X"),
        *("--entrypoint", "python", "img:1", "x.py", "--gpus", "2"),
    ]
    assert strip_gpus(["container", "create", "--gpus", "all", "img"]) == (
        ["container", "create", "img"],
        ContainerRun(command="create", image="img", gpus=("all",)),
    )
    assert strip_gpus(["logs", "-f", "--gpus", "x"]) == (["logs", "-f", "--gpus", "x"], None)
    assert strip_gpus(["run", "--rm", "img"])[1] == ContainerRun("run", "img", ())


async def test_a_gpu_pool_s_tasks_find_the_shim_first_on_path_and_their_runs_are_kept(
    fake: FakeBatch, client: BatchClient
) -> None:
    assert fake.is_gpu_pool("gpu") and not fake.is_gpu_pool("p1")
    assert (await client.get_pool("gpu")).vm_size == "standard_nc6s_v3"
    # no engine here (docker_host=""): the shim records the run, then the real client fails
    script = "command -v docker; docker run --rm --gpus all -e A img:2 echo --gpus 3"
    for pool in ("p1", "gpu"):
        await client.create_job(
            models.BatchJobCreateOptions(
                id=f"j-{pool}", pool_info=models.BatchPoolInfo(pool_id=pool)
            )
        )
        await client.create_task(
            f"j-{pool}",
            models.BatchTaskCreateOptions(id="t", command_line=f"/bin/sh -c '{script}'"),
        )
        await _wait_completed(client, f"j-{pool}", "t")
        await client.delete_task(f"j-{pool}", "t")
    cpu, gpu = fake.ran
    assert (cpu.job_id, cpu.pool_id, cpu.container_runs) == ("j-p1", "p1", ())
    assert (gpu.job_id, gpu.task_id, gpu.pool_id) == ("j-gpu", "t", "gpu")
    assert gpu.container_runs == (ContainerRun(command="run", image="img:2", gpus=("all",)),)
    assert "--gpus all" in gpu.command_line and gpu.exit_code not in (None, 0)
