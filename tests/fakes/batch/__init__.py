"""A wire-level fake of the Azure Batch REST API for tests (never shipped).

The unmodified `azure-batch` SDK (`azure.batch.aio.BatchClient`, shared key) talks to it over
real HTTPS (a certificate made with `cryptography`; trust it with `connection_verify=ca_file`):

    with FakeBatch(tmp_path, pools={"ion-pool": {}}) as batch:
        client = BatchClient(batch.url, AzureNamedKeyCredential(batch.account, batch.key),
                             connection_verify=batch.ca_file)

Covered: Shared Key verified as the service does (a wrong key, another account, a stale date:
403 `AuthenticationFailed` with `AuthenticationErrorDetail`); `api-version` required; pools get
(`PoolNotFound`); jobs list, add (`JobExists`, `JobBeingDeleted` 409), get (`JobNotFound`), delete
(202, `deleting` for a moment, its tasks stopped); tasks add (id rules, `TaskExists` 409), get,
list (`$select`, `$filter=state eq '<state>'`), delete, terminate (`TaskCompleted` 409); task files
get (`stdout.txt`, `stderr.txt`, `wd/...`; `FileNotFound`); `$select` on gets; the OData error
body with `code`, `message.value` and `values`; throttling (`throttle(n, status=429|503,
retry_after=s)`); task states active → running → completed with `executionInfo` (start/end
time, exitCode, result, failureInfo `FailureExitCode`, `MaxWallClockTimeExpiry`, `TaskEnded`).

Its tasks really run: the command line is split as a Linux node splits it and run on this
machine in the task's `wd` with Batch's variables and `DOCKER_HOST`, one process group per task.
`batch.ran` keeps every task that completed (its command line, exit code, container runs), also
after the task is deleted.

GPU pools: a pool whose `vmSize` is of a GPU family (NC, ND, NV, NG; `FakeBatch(gpu_pools=("p",))`
gives `standard_nc6s_v3`; other pools are `standard_d4s_v3`) plays a pool of GPU nodes with the
NVIDIA container toolkit. This machine has no GPU, so its tasks find a `docker` shim first on
PATH (`_docker_shim`): it records each `docker run|create` with its image and `--gpus` values
(`RanTask.container_runs`), takes `--gpus` out (only before the image) and runs the real
`docker`. The container then runs without a GPU; what is tested is that the task asked for one.
On a CPU pool `--gpus` reaches the real `docker`, which refuses it as a node without NVIDIA does.

Not covered (differs from the service): pools, nodes, schedules, applications, certificates,
output files and resource files, task dependencies, multi-instance tasks, retries
(`maxTaskRetryCount` is ignored), container task settings (`containerSettings` is ignored: the
script runs `docker` itself), start tasks, job preparation/release tasks, If-Match/etag
conditions, paging (`odata.nextLink`: every list is one page), `$expand`, any `$filter` but
`state eq`, Microsoft Entra tokens (only Shared Key), user identities (every task runs as the
test's user), and persistence.
"""

from tests.fakes.batch._auth import AuthFailure, sign, string_to_sign, verify
from tests.fakes.batch._docker_shim import ContainerRun, strip_gpus
from tests.fakes.batch._server import BatchError, FakeBatch, Logged, RanTask, running_fake_batch

__all__ = [
    "AuthFailure",
    "BatchError",
    "ContainerRun",
    "FakeBatch",
    "Logged",
    "RanTask",
    "running_fake_batch",
    "sign",
    "string_to_sign",
    "strip_gpus",
    "verify",
]
