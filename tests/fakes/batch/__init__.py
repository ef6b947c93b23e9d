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

Not covered (differs from the service): pools, nodes, schedules, applications, certificates,
output files and resource files, task dependencies, multi-instance tasks, retries
(`maxTaskRetryCount` is ignored), container task settings (`containerSettings` is ignored: the
script runs `docker` itself), start tasks, job preparation/release tasks, If-Match/etag
conditions, paging (`odata.nextLink`: every list is one page), `$expand`, any `$filter` but
`state eq`, Microsoft Entra tokens (only Shared Key), user identities (every task runs as the
test's user), and persistence.
"""

from tests.fakes.batch._auth import AuthFailure, sign, string_to_sign, verify
from tests.fakes.batch._server import BatchError, FakeBatch, Logged, running_fake_batch

__all__ = [
    "AuthFailure",
    "BatchError",
    "FakeBatch",
    "Logged",
    "running_fake_batch",
    "sign",
    "string_to_sign",
    "verify",
]
