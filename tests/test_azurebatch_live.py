"""The Azure Batch executor against a real Batch account: runs only when ION_TEST_BATCH_* is set.

    ION_TEST_BATCH_ACCOUNT_URL=https://myaccount.westeurope.batch.azure.com
    ION_TEST_BATCH_POOL_ID=ion-pool              # a pool whose nodes run Docker (docs/azure-batch.md)
    ION_TEST_BATCH_ACCOUNT_KEY=...               # optional: else azure-identity (managed identity, az login)
    ION_TEST_BATCH_HANDLER_IMAGE=registry.example.com/ion-handler:0.1.0
    ION_TEST_BATCH_MODULE_IMAGE=registry.example.com/ion-base:1   # has /bin/sh
    ION_TEST_BATCH_BACKENDS=azure                # optional: the job's backends are Ion's Azure ones,
                                                 # from ION_BUS__URL/ION_BLOBS__URL/ION_META__URL and the
                                                 # ION_AZURE_* credentials in this environment

A job is added to the pool, the module writes an output and an event, the commit stores them,
and the task is deleted afterwards, as the contract says. Without the variables the test is
skipped with the names of the ones missing.
"""

from __future__ import annotations

import os
import uuid

import pytest

from ion.core.backends import open_blobs, open_bus, open_meta
from ion.core.config import load_settings
from ion.core.events import new_root_event
from ion.core.modules import ModuleSpec
from ion.core.ports.executor import BackendRefs, JobRequest, JobState
from ion.dispatcher.executors.azurebatch import AzureBatchExecutor

pytestmark = pytest.mark.timeout(1800)

REQUIRED = (
    "ION_TEST_BATCH_ACCOUNT_URL",
    "ION_TEST_BATCH_POOL_ID",
    "ION_TEST_BATCH_HANDLER_IMAGE",
    "ION_TEST_BATCH_MODULE_IMAGE",
)


async def test_a_job_runs_as_a_task_on_a_real_batch_pool() -> None:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        pytest.skip(f"no live Azure Batch account: set {', '.join(missing)} to run this test")
    env = dict(os.environ)
    env.update(
        {
            "ION_AZUREBATCH__ACCOUNT_URL": env["ION_TEST_BATCH_ACCOUNT_URL"],
            "ION_AZUREBATCH__POOL_ID": env["ION_TEST_BATCH_POOL_ID"],
            "ION_AZUREBATCH__ACCOUNT_KEY": env.get("ION_TEST_BATCH_ACCOUNT_KEY", ""),
            "ION_AZUREBATCH__HANDLER_IMAGE": env["ION_TEST_BATCH_HANDLER_IMAGE"],
            "ION_AZUREBATCH__DEFAULT_MODULE_IMAGE": env["ION_TEST_BATCH_MODULE_IMAGE"],
            "ION_AZUREBATCH__JOB_ID_PREFIX": "ion-live-test",
        }
    )
    settings = load_settings(environ=env)
    bus, blobs, meta = (
        open_bus(settings.bus_url),
        open_blobs(settings.blobs_url),
        open_meta(settings.meta_url),
    )
    executor = AzureBatchExecutor.from_settings(
        settings, blobs=blobs, meta=meta, bus=bus, module="live", environ=env
    )
    try:
        await bus.ensure_topic("live.done")
        spec = ModuleSpec(
            name="live",
            subscribes_to="live.start",
            publishes=["live.done"],
            command=[
                "/bin/sh",
                "-c",
                'echo made > "$HANDLER_BASE_DIR/out/data/made.txt"; printf \'[{"key":"eventType",'
                '"value":"live.done"},{"key":"files","value":"made.txt"}]\' '
                '> "$HANDLER_BASE_DIR/out/events/done.json"',
            ],
            max_execution_seconds=600,
        )
        job = JobRequest(
            job_id=f"live-{uuid.uuid4().hex[:12]}-a1",
            attempt=1,
            event=new_root_event("live.start"),
            spec=spec,
            backends=BackendRefs(
                bus_url=settings.bus_url, blobs_url=settings.blobs_url, meta_url=settings.meta_url
            ),
        )
        await executor.submit(job)
        result = await executor.wait(job.job_id)
        assert result.state == JobState.SUCCEEDED, result.reason
        assert result.outputs and len(result.child_event_ids) == 1
        assert (await blobs.stat(result.outputs[0])).size > 0
        await executor.delete(job.job_id)
    finally:
        await executor.delete_batch_job()
        await executor.aclose()
        for backend in (bus, blobs, meta):
            await backend.aclose()
