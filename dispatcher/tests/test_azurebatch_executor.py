"""The Azure Batch executor against the wire-level Batch fake, whose tasks run on this machine's
Docker engine with Ion's real handler image.

The executor contract runs with embedded backends under the test's tmp_path, which the job's
containers mount at the same path (`host_path_mounts`, as the Kubernetes executor's one-node
mode does); modules that give only a command run on the base image. Then what is Batch's own:
the task's id and command line, GPU, the wall clock, adoption by a restarted executor, cleanup,
a missing pool, a wrong key, and throttling retried by the SDK.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ion.core import errors
from ion.core.config import load_settings
from ion.core.ports.executor import JobPhase, JobState
from ion.core.testing.embedded import EmbeddedBackends
from ion.core.testing.executor_contract import ExecutorContract, RequestFactory
from ion.dispatcher.executors.azurebatch import (
    AzureBatchExecutor,
    BatchApi,
    TaskSettings,
    batch_id,
)
from tests.containers.fixtures import LOCAL_BASE, DockerEngine, IonImages
from tests.fakes.batch import FakeBatch, running_fake_batch

pytestmark = pytest.mark.timeout(300)

POOL = "ion-pool"


@pytest.fixture(scope="module")
def images(docker_engine: DockerEngine) -> dict[str, str]:
    """The handler image and a base image for command-only modules (built by CI's image step)."""
    found = {}
    for name, tag in (("handler", "localhost/ion-handler:dev"), ("base", LOCAL_BASE)):
        if docker_engine.run("image", "inspect", tag, check=False).returncode != 0:
            pytest.fail(f"{tag} is missing: run `make images` (tools/docker/images.py) first")
        found[name] = tag
    return found


@pytest.fixture
def fake(tmp_path: Path, docker_engine: DockerEngine) -> Iterator[FakeBatch]:
    with running_fake_batch(tmp_path / "batch-nodes", pools={POOL: {}}, docker_host=docker_engine.host) as batch:
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
