"""The Azure Batch executor against the wire-level Batch fake, whose tasks run on this machine's
Docker engine with Ion's real handler image.

The executor contract runs with embedded backends under the test's tmp_path, which the job's
containers mount at the same path (`host_path_mounts`, as the Kubernetes executor's one-node
mode does); modules that give only a command run on the base image. Then what is Batch's own:
the task's id and command line, GPU, the wall clock, adoption by a restarted executor, cleanup,
a missing pool, a wrong key, and throttling retried by the SDK.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import isodate
import pytest

from ion.core import errors
from ion.core.config import load_settings
from ion.core.ports.executor import JobState
from ion.core.testing.embedded import EmbeddedBackends
from ion.core.testing.executor_contract import ExecutorContract, RequestFactory
from ion.dispatcher.executors.azurebatch import (
    AzureBatchExecutor,
    BatchApi,
    TaskSettings,
    batch_id,
    task_plan,
)
from tests.containers.fixtures import LOCAL_BASE, DockerEngine, build_images
from tests.fakes.batch import FakeBatch, running_fake_batch

pytestmark = pytest.mark.timeout(300)

POOL = "ion-pool"


@pytest.fixture(scope="module")
def images(docker_engine: DockerEngine) -> dict[str, str]:
    """The handler image (a cache hit after CI's image step) and the base image for
    command-only modules."""
    base = os.environ.get("BASE_IMAGE", "") or LOCAL_BASE
    built = build_images(docker_engine, base=base, only=["handler"])
    return {"handler": built.tag("handler"), "base": base}


@pytest.fixture
def fake(tmp_path: Path, docker_engine: DockerEngine) -> Iterator[FakeBatch]:
    with running_fake_batch(
        tmp_path / "batch-nodes", pools={POOL: {}}, docker_host=docker_engine.host
    ) as batch:
        yield batch


def _api(fake: FakeBatch, *, key: str | None = None) -> BatchApi:
    return BatchApi.connect(
        fake.url,
        account_name=fake.account,
        account_key=key or fake.key,
        ca_file=fake.ca_file,
        retry_backoff_factor=0.1,
    )


def make_executor(
    fake: FakeBatch,
    backends: EmbeddedBackends,
    tmp_path: Path,
    images: dict[str, str],
    **kw: Any,
) -> AzureBatchExecutor:
    task = TaskSettings(
        handler_image=images["handler"],
        default_module_image=images["base"],
        handler_env=backends.env,
        host_path_mounts=(str(tmp_path),),
        handler_user=(os.getuid(), os.getgid()),
        deadline_allowance=kw.pop("deadline_allowance", timedelta(seconds=60)),
    )
    return AzureBatchExecutor(
        _api(fake),
        pool_id=kw.pop("pool_id", POOL),
        batch_job=kw.pop("batch_job", "ion-maker"),
        task=task,
        blobs=backends.blobs,
        meta=backends.meta,
        bus=backends.bus,
        url_lifetime=timedelta(hours=1),
        poll_interval=timedelta(seconds=0.1),
        job_delete_wait=timedelta(seconds=5),
        **kw,
    )


class TestAzureBatchExecutorContract(ExecutorContract):
    @pytest.fixture
    async def executor(
        self,
        fake: FakeBatch,
        backends: EmbeddedBackends,
        tmp_path: Path,
        images: dict[str, str],
    ) -> AsyncIterator[AzureBatchExecutor]:
        found = make_executor(fake, backends, tmp_path, images)
        yield found
        await found.aclose()

    def test_task_ids_follow_batch_s_rules_and_stay_distinct(self) -> None:
        assert batch_id("maker-job-1-a1") == "maker-job-1-a1"
        odd = batch_id("a/b c" + "x" * 100)
        assert len(odd) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", odd)
        assert batch_id("a/b") != batch_id("a:b")  # each shortened id keeps a hash of the original

    def test_the_command_line_carries_no_secret_and_the_module_s_gpu_and_deadline(
        self,
        request_factory: RequestFactory,
    ) -> None:
        job = request_factory("echo hi", env={"API_TOKEN": "module-secret-value"})
        job = job.model_copy(
            update={
                "spec": job.spec.model_copy(
                    update={"resources": job.spec.resources.model_copy(update={"gpu": 1})}
                )
            }
        )
        plan = task_plan(
            job,
            TaskSettings(
                handler_image="registry.example.com/ion-handler:1",
                default_module_image="registry.example.com/base:1",
                registry_server="registry.example.com",
                registry_username="puller",
                registry_password="registry-secret-value",
                handler_secrets={"ION_AZURE_COSMOS_KEY": "cosmos-secret-value"},
                deadline_allowance=timedelta(seconds=100),
            ),
        )
        for secret in ("module-secret-value", "registry-secret-value", "cosmos-secret-value"):
            assert secret not in plan.command_line
            assert secret in plan.environment.values()
        assert "--gpus all" in plan.command_line
        assert (
            "-e API_TOKEN" in plan.command_line and "-e ION_AZURE_COSMOS_KEY" in plan.command_line
        )
        assert plan.max_wall_clock == timedelta(seconds=30 + 100)
        assert plan.environment["ION_BATCH_DEADLINE"] == "30"
        without_gpu = task_plan(
            request_factory("true"), TaskSettings(handler_image="h", default_module_image="b")
        )
        assert "--gpus" not in without_gpu.command_line

    async def test_a_restarted_executor_adopts_the_running_task_and_delete_removes_it(
        self,
        fake: FakeBatch,
        backends: EmbeddedBackends,
        tmp_path: Path,
        images: dict[str, str],
        request_factory: RequestFactory,
    ) -> None:
        runs = tmp_path / "runs"
        job = request_factory(f"echo run >> {runs}; sleep 2")
        first = make_executor(fake, backends, tmp_path, images)
        await first.submit(job)
        await first.aclose()  # the dispatcher goes away while the task runs
        second = make_executor(fake, backends, tmp_path, images)
        try:
            again = await second.submit(job)  # a redelivered message: TaskExists, adopted
            assert again.state == JobState.RUNNING
            result = await second.wait(job.job_id)
            assert result.state == JobState.SUCCEEDED, result.reason
            assert runs.read_text().count("run") == 1
            assert [j.job_id for j in await second.list_jobs()] == [job.job_id]
            await second.delete(job.job_id)
            assert fake.jobs["ion-maker"].tasks == {}
            with pytest.raises(errors.NotFoundError):
                await second.status(job.job_id)
        finally:
            await second.aclose()
        added = [e for e in fake.log if e.method == "POST" and e.path.endswith("/tasks")]
        assert [e.code for e in added] == ["", "TaskExists"]

    async def test_throttled_requests_are_retried_and_the_job_still_runs(
        self,
        fake: FakeBatch,
        backends: EmbeddedBackends,
        tmp_path: Path,
        images: dict[str, str],
        request_factory: RequestFactory,
    ) -> None:
        executor = make_executor(fake, backends, tmp_path, images)
        try:
            fake.throttle(2, status=429, retry_after=1)
            fake.throttle(1, status=503, retry_after=1)
            job = request_factory("true")
            await executor.submit(job)
            assert (await executor.wait(job.job_id)).state == JobState.SUCCEEDED
        finally:
            await executor.aclose()
        assert [e.status for e in fake.log[:4]] == [429, 429, 503, 200]

    async def test_the_task_s_wall_clock_is_a_backstop_reported_as_a_timeout(
        self,
        fake: FakeBatch,
        backends: EmbeddedBackends,
        tmp_path: Path,
        images: dict[str, str],
        request_factory: RequestFactory,
    ) -> None:
        # no allowance beyond the module's own deadline: the service stops the whole task
        executor = make_executor(
            fake, backends, tmp_path, images, deadline_allowance=timedelta(seconds=0)
        )
        try:
            job = request_factory("sleep 30", max_execution=timedelta(seconds=1))
            await executor.submit(job)
            result = await executor.wait(job.job_id)
        finally:
            await executor.aclose()
        assert result.state == JobState.FAILED and result.timed_out, result
        limit = fake.task("ion-maker", batch_id(job.job_id))["constraints"]["maxWallClockTime"]
        assert isodate.parse_duration(limit) == timedelta(seconds=1)

    async def test_a_missing_pool_and_a_wrong_key_are_configuration_errors(
        self,
        fake: FakeBatch,
        backends: EmbeddedBackends,
        tmp_path: Path,
        images: dict[str, str],
        request_factory: RequestFactory,
    ) -> None:
        executor = make_executor(fake, backends, tmp_path, images, pool_id="no-such-pool")
        try:
            with pytest.raises(errors.ConfigError, match="no-such-pool"):
                await executor.submit(request_factory("true"))
        finally:
            await executor.aclose()
        settings = load_settings(
            environ={
                "ION_AZUREBATCH__ACCOUNT_URL": fake.url,
                "ION_AZUREBATCH__ACCOUNT_NAME": fake.account,
                "ION_AZUREBATCH__ACCOUNT_KEY": "d3Jvbmcga2V5",
                "ION_AZUREBATCH__POOL_ID": POOL,
                "ION_AZUREBATCH__CA_FILE": fake.ca_file,
            }
        )
        wrong = AzureBatchExecutor.from_settings(
            settings, blobs=backends.blobs, meta=backends.meta, bus=backends.bus, module="maker"
        )
        try:
            with pytest.raises(errors.ConfigError, match="refused the credentials"):
                await wrong.submit(request_factory("true"))
        finally:
            await wrong.aclose()
        with pytest.raises(errors.ConfigError, match="ACCOUNT_URL"):
            AzureBatchExecutor.from_settings(
                load_settings(environ={}),
                blobs=backends.blobs,
                meta=backends.meta,
                bus=backends.bus,
            )
