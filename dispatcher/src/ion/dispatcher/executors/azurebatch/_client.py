"""The only module that speaks to the `azure-batch` SDK: the async `BatchClient`, its errors
translated to Ion's at this edge, and the few operations the executor and the deployer use.

azure-batch 15 (the generated SDK, `azure.batch.aio.BatchClient`) is used rather than 14.x
(`BatchServiceClient` on msrest, sync only and no longer developed): it is async, takes an
`AzureNamedKeyCredential` (shared key) or any azure-identity token credential, and runs on
azure-core's pipeline, whose retry policy retries 429 and 5xx answers after their Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from ion.core import errors
from ion.dispatcher.executors.azurebatch._task import TaskPlan

log = logging.getLogger(__name__)
# azure-batch 15 logs a WARNING with a traceback for every error answer to a streamed download
# (a task file that does not exist yet, which the executor expects): it cannot read the body.
logging.getLogger("azure.batch._utils.model_base").setLevel(logging.ERROR)

RETRY_TOTAL = 6
"""Attempts azure-core's retry policy makes at a throttled (429) or busy (5xx) request."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskView:
    """What the executor reads of a Batch task."""

    id: str
    display_name: str
    state: str
    """`active`, `preparing`, `running` or `completed`."""
    exit_code: int | None = None
    failure_code: str = ""
    failure_message: str = ""
    created: datetime | None = None
    started: datetime | None = None
    ended: datetime | None = None
    max_wall_clock: timedelta | None = None
    environment: dict[str, str] = field(default_factory=dict)


def _code(err: Exception) -> str:
    """The service's error code (`JobNotFound`, `TaskExists`), else the HTTP reason."""
    found = getattr(err, "error", None)
    code = getattr(found, "code", None) if found is not None else None
    return str(code or getattr(err, "reason", None) or type(err).__name__)


def _translate(err: Exception, what: str) -> errors.IonError:
    """An SDK error as Ion's: NotFound/Conflict by status, throttling and outages transient."""
    if isinstance(err, ClientAuthenticationError) or (
        isinstance(err, HttpResponseError) and err.status_code == 403
    ):
        return errors.ConfigError(
            f"{what}: Azure Batch refused the credentials ({_code(err)}); check "
            "ION_AZUREBATCH__ACCOUNT_NAME and ION_AZUREBATCH__ACCOUNT_KEY, or the identity's role"
        )
    if isinstance(err, ResourceNotFoundError):
        return errors.NotFoundError(f"{what}: {_code(err)}")
    if isinstance(err, ResourceExistsError):
        return errors.ConflictError(f"{what}: {_code(err)}")
    if isinstance(err, HttpResponseError):
        status = err.status_code or 0
        if status == 429 or status >= 500:
            return errors.TransientError(f"{what}: Azure Batch answered {status} ({_code(err)})")
        return errors.IonError(f"{what}: Azure Batch answered {status}: {err.message}")
    if isinstance(err, ServiceRequestError | ServiceResponseError):
        return errors.TransientError(f"{what}: cannot reach Azure Batch: {err}")
    return errors.IonError(f"{what}: {err}")


def _view(task: models.BatchTask) -> TaskView:
    info = task.execution_info
    failure = info.failure_info if info else None
    return TaskView(
        id=task.id,
        display_name=task.display_name or task.id,
        state=str(task.state.value if hasattr(task.state, "value") else task.state),
        exit_code=info.exit_code if info else None,
        failure_code=(failure.code or "") if failure else "",
        failure_message=(failure.message or "") if failure else "",
        created=task.creation_time,
        started=info.start_time if info else None,
        ended=info.end_time if info else None,
        max_wall_clock=task.constraints.max_wall_clock_time if task.constraints else None,
        environment={e.name: e.value or "" for e in task.environment_settings or []},
    )


class BatchApi:
    """A Batch account, as far as Ion uses it."""

    def __init__(self, client: BatchClient) -> None:
        self._client = client

    @classmethod
    def connect(
        cls,
        account_url: str,
        *,
        account_name: str = "",
        account_key: str = "",
        managed_identity_client_id: str = "",
        ca_file: str = "",
        retry_backoff_factor: float = 0.8,
    ) -> BatchApi:
        """A client of the account: shared key when `account_key` is given, else a token from
        azure-identity (managed identity, workload identity, a developer's login).

        Raises:
            errors.ConfigError: the URL is not https or no account name can be found.
        """
        if not account_url.startswith("https://"):
            raise errors.ConfigError(
                f"setting ION_AZUREBATCH__ACCOUNT_URL is {account_url!r}: use the account's "
                "endpoint, like https://myaccount.westeurope.batch.azure.com"
            )
        credential: Any
        if account_key:
            name = account_name or account_url.removeprefix("https://").split(".", 1)[0]
            credential = AzureNamedKeyCredential(name, account_key)
        else:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential(
                managed_identity_client_id=managed_identity_client_id or None
            )
        kwargs: dict[str, Any] = {
            "retry_total": RETRY_TOTAL,
            "retry_backoff_factor": retry_backoff_factor,
        }
        if ca_file:
            kwargs["connection_verify"] = ca_file
        return cls(BatchClient(account_url, credential, **kwargs))

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.close()

    async def pool_state(self, pool_id: str) -> str:
        """The pool's state (`active`, `deleting`).

        Raises:
            errors.NotFoundError: no such pool.
        """
        try:
            pool = await self._client.get_pool(pool_id, select=["id", "state"])
        except Exception as err:
            raise _translate(err, f"cannot read pool {pool_id!r}") from err
        return str(pool.state.value if hasattr(pool.state, "value") else pool.state or "")

    async def job_state(self, job_id: str) -> str:
        """The Batch job's state, or "" when there is none."""
        try:
            job = await self._client.get_job(job_id, select=["id", "state"])
        except ResourceNotFoundError:
            return ""
        except Exception as err:
            raise _translate(err, f"cannot read Batch job {job_id!r}") from err
        return str(job.state.value if hasattr(job.state, "value") else job.state or "")

    async def ensure_job(self, job_id: str, pool_id: str, *, wait: timedelta) -> None:
        """Get or create the Batch job on the pool; a job being deleted is waited on for at most
        `wait`, then made again.

        Raises:
            errors.TransientError: it was still being deleted after `wait`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait.total_seconds()
        while True:
            state = await self.job_state(job_id)
            if state and state != "deleting":
                return
            if not state:
                try:
                    await self._client.create_job(
                        models.BatchJobCreateOptions(
                            id=job_id,
                            pool_info=models.BatchPoolInfo(pool_id=pool_id),
                            display_name=f"Ion dispatcher job {job_id}",
                        )
                    )
                    log.info("created Batch job %s on pool %s", job_id, pool_id)
                    return
                except ResourceExistsError as err:
                    if _code(err) != "JobBeingDeleted":
                        return  # made by another dispatcher meanwhile
                except Exception as err:
                    raise _translate(err, f"cannot create Batch job {job_id!r}") from err
            if loop.time() >= deadline:
                raise errors.TransientError(
                    f"Batch job {job_id!r} is still being deleted after {wait.total_seconds():g}s"
                )
            await asyncio.sleep(min(1.0, max(wait.total_seconds() / 20, 0.05)))

    async def delete_job(self, job_id: str) -> None:
        """Start deleting the Batch job (and its tasks); succeeds if it is gone."""
        try:
            await self._client.begin_delete_job(job_id, polling_interval=1)
        except ResourceNotFoundError:
            return
        except Exception as err:
            raise _translate(err, f"cannot delete Batch job {job_id!r}") from err

    async def create_task(self, job_id: str, plan: TaskPlan) -> None:
        """Add the task.

        Raises:
            errors.ConflictError: a task with its id exists (`TaskExists`).
        """
        options = models.BatchTaskCreateOptions(
            id=plan.task_id,
            display_name=plan.display_name,
            command_line=plan.command_line,
            environment_settings=[
                models.EnvironmentSetting(name=k, value=v)
                for k, v in sorted(plan.environment.items())
            ],
            constraints=models.BatchTaskConstraints(
                max_wall_clock_time=plan.max_wall_clock,
                retention_time=plan.retention,
                max_task_retry_count=0,
            ),
            user_identity=models.UserIdentity(
                auto_user=models.AutoUserSpecification(
                    scope=models.AutoUserScope.POOL, elevation_level=models.ElevationLevel.ADMIN
                )
            ),
        )
        try:
            await self._client.create_task(job_id, options)
        except Exception as err:
            raise _translate(err, f"cannot add task {plan.task_id!r} to {job_id!r}") from err

    async def get_task(self, job_id: str, task_id: str) -> TaskView:
        """The task.

        Raises:
            errors.NotFoundError: no such task (or job).
        """
        try:
            return _view(await self._client.get_task(job_id, task_id))
        except Exception as err:
            raise _translate(err, f"cannot read task {task_id!r} of {job_id!r}") from err

    async def list_tasks(self, job_id: str) -> list[TaskView]:
        """Every task of the Batch job (empty when it does not exist)."""
        try:
            return [_view(t) async for t in self._client.list_tasks(job_id)]
        except ResourceNotFoundError:
            return []
        except Exception as err:
            raise _translate(err, f"cannot list the tasks of {job_id!r}") from err

    async def terminate_task(self, job_id: str, task_id: str) -> None:
        """Stop the task; succeeds if it is gone or has completed."""
        try:
            await self._client.terminate_task(job_id, task_id)
        except (ResourceNotFoundError, ResourceExistsError):
            return
        except Exception as err:
            raise _translate(err, f"cannot terminate task {task_id!r}") from err

    async def delete_task(self, job_id: str, task_id: str) -> None:
        """Delete the task and its files; succeeds if it is gone."""
        try:
            await self._client.delete_task(job_id, task_id)
        except ResourceNotFoundError:
            return
        except Exception as err:
            raise _translate(err, f"cannot delete task {task_id!r}") from err

    async def read_file(self, job_id: str, task_id: str, path: str, *, limit: int) -> bytes | None:
        """The first `limit` bytes of one of the task's files (`stdout.txt`, `wd/...`); None when
        it does not exist."""
        try:
            stream = await self._client.download_task_file(job_id, task_id, path)
            data = bytearray()
            async for chunk in stream:
                data += chunk
                if len(data) >= limit:
                    break
            return bytes(data[:limit])
        except ResourceNotFoundError:
            return None
        except Exception as err:
            raise _translate(err, f"cannot read {path} of task {task_id!r}") from err
