"""`AzureBatchExecutor`: one Batch task per attempt, in one Batch job per module dispatcher.

The pool is named and must exist (Ion never creates one at job time); the Batch job is got or
created on first use. A task's id is the job id under Batch's id rules and its display name the
job id itself, and the task carries its `JobRequest` in an environment setting, so a dispatcher
that restarts finds its tasks by id and adopts them; a second `submit` of an id adds nothing.
A running task's state is read every `poll_interval`; once it has completed, the step files the
script left (`wd/ion-steps`, the handler's reports in `wd/outcome/`) and its output say how the
attempt ended, the output is stored as the attempt's log, and the task is deleted by `delete`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ion.core import errors
from ion.core.clock import Clock, SystemClock
from ion.core.config import IonSettings
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.executor import JobPhase, JobRequest, JobResult, JobState, output_tail
from ion.core.ports.meta import MetadataStore
from ion.dispatcher.executors import _remote
from ion.dispatcher.executors.azurebatch._client import BatchApi, TaskView
from ion.dispatcher.executors.azurebatch._task import (
    COMMIT,
    PREPARE,
    REQUEST_ENV,
    STEPS_FILE,
    TIMED_OUT,
    WORKER,
    TaskSettings,
    batch_id,
    batch_job_id,
    task_plan,
)

log = logging.getLogger(__name__)

LOG_LIMIT_BYTES = 8 * 1024 * 1024
"""At most this much of each of the task's files is read into the attempt's log."""
REPORT_LIMIT_BYTES = 256 * 1024


class AzureBatchExecutor:
    """Runs each attempt as a task of one Batch job on a named pool."""

    def __init__(
        self,
        api: BatchApi,
        *,
        pool_id: str,
        batch_job: str,
        task: TaskSettings,
        blobs: BlobStore,
        meta: MetadataStore,
        bus: EventBus,
        url_lifetime: timedelta,
        poll_interval: timedelta = timedelta(seconds=2),
        job_delete_wait: timedelta = timedelta(seconds=60),
        clock: Clock | None = None,
    ) -> None:
        self._api = api
        self._pool_id = pool_id
        self._job = batch_job
        self._task = task
        self._blobs, self._meta, self._bus = blobs, meta, bus
        self._url_lifetime = url_lifetime
        self._poll = poll_interval
        self._job_delete_wait = job_delete_wait
        self._clock = clock or SystemClock()
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._requests: dict[str, JobRequest] = {}
        self._results: dict[str, JobResult] = {}
        self._finishing: dict[str, asyncio.Task[JobResult]] = {}
        self._cancelled: set[str] = set()

    @classmethod
    def from_settings(
        cls,
        settings: IonSettings,
        *,
        blobs: BlobStore,
        meta: MetadataStore,
        bus: EventBus,
        module: str | None = None,
        default_module_image: str = "",
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> AzureBatchExecutor:
        """An executor configured by `settings.azurebatch`; the variables it names in
        `forward_env` are read from `environ` (default: this process's environment).

        Raises:
            errors.ConfigError: the account URL or pool is missing.
        """
        cfg = settings.azurebatch
        if not cfg.account_url or not cfg.pool_id:
            raise errors.ConfigError(
                "the azurebatch executor needs ION_AZUREBATCH__ACCOUNT_URL (like "
                "https://myaccount.westeurope.batch.azure.com) and ION_AZUREBATCH__POOL_ID"
            )
        env = os.environ if environ is None else environ
        api = BatchApi.connect(
            cfg.account_url,
            account_name=cfg.account_name,
            account_key=cfg.account_key.get_secret_value(),
            managed_identity_client_id=cfg.managed_identity_client_id,
            ca_file=cfg.ca_file,
        )
        mounts = tuple(cfg.host_path_mounts)
        return cls(
            api,
            pool_id=cfg.pool_id,
            batch_job=batch_job_id(cfg.job_id_prefix, module),
            task=TaskSettings(
                handler_image=cfg.handler_image,
                default_module_image=cfg.default_module_image or default_module_image,
                registry_server=cfg.registry_server,
                registry_username=cfg.registry_username,
                registry_password=cfg.registry_password.get_secret_value(),
                handler_env=dict(cfg.handler_env),
                handler_secrets={n: env[n] for n in cfg.forward_env if env.get(n)},
                docker_network=cfg.docker_network,
                host_path_mounts=mounts,
                handler_user=_owner(mounts[0]) if mounts else None,
                deadline_allowance=timedelta(seconds=cfg.deadline_allowance_seconds),
                retention=timedelta(seconds=cfg.task_retention_seconds),
            ),
            blobs=blobs,
            meta=meta,
            bus=bus,
            url_lifetime=timedelta(hours=settings.blobs.sas_lifetime_hours),
            poll_interval=timedelta(seconds=cfg.poll_interval_seconds),
            job_delete_wait=timedelta(seconds=cfg.job_delete_wait_seconds),
            clock=clock,
        )

    @property
    def batch_job(self) -> str:
        """The Batch job this executor's tasks are in."""
        return self._job

    async def _ensure_ready(self) -> None:
        """Check the pool and get or create the Batch job, once."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            try:
                state = await self._api.pool_state(self._pool_id)
            except errors.NotFoundError as err:
                raise errors.ConfigError(
                    f"Batch pool {self._pool_id!r} does not exist in the account: Ion never "
                    "creates pools; create it (Terraform, the portal) or fix "
                    "ION_AZUREBATCH__POOL_ID"
                ) from err
            if state not in ("active", ""):
                raise errors.TransientError(f"Batch pool {self._pool_id!r} is {state}")
            await self._api.ensure_job(self._job, self._pool_id, wait=self._job_delete_wait)
            self._ready = True

    # -- the port -----------------------------------------------------------------------------

    async def submit(self, job: JobRequest) -> JobResult:
        """Add the attempt's task, or return the state of the one that exists already."""
        if job.job_id in self._results:
            return self._results[job.job_id]
        await self._ensure_ready()
        self._requests[job.job_id] = job
        try:
            plan = task_plan(job, self._task)
        except ValueError as err:
            return await self._refuse(job, str(err))
        try:
            await self._api.create_task(self._job, plan)
        except errors.ConflictError:
            log.info("task %s exists already: adopting it", plan.task_id)
            return await self.status(job.job_id)
        except errors.NotFoundError:  # the job went away under us: make it again, once
            self._ready = False
            await self._ensure_ready()
            await self._api.create_task(self._job, plan)
        except errors.TransientError:
            raise
        except errors.IonError as err:
            return await self._refuse(job, f"Azure Batch refused the task: {err}")
        log.info("added task %s to Batch job %s", plan.task_id, self._job)
        return JobResult(job_id=job.job_id, state=JobState.RUNNING, started_at=self._clock.now())

    async def status(self, job_id: str) -> JobResult:
        """Return the attempt's state as its task shows it."""
        if job_id in self._results:
            return self._results[job_id]
        task = await self._api.get_task(self._job, batch_id(job_id))
        return self._light_result(job_id, task)

    async def wait(self, job_id: str) -> JobResult:
        """Wait until the attempt's task has completed, store its log, return its result."""
        while True:
            if job_id in self._results:
                return self._results[job_id]
            if (running := self._finishing.get(job_id)) is not None:
                return await asyncio.shield(running)
            try:
                task: TaskView | None = await self._api.get_task(self._job, batch_id(job_id))
            except errors.NotFoundError:
                if job_id not in self._requests:
                    raise
                task = None
            except errors.TransientError as err:
                log.warning("reading task of %s failed (%s); trying again", job_id, err)
                await asyncio.sleep(self._poll.total_seconds())
                continue
            if task is None or task.state == "completed":
                finishing = asyncio.create_task(self._finish(job_id, task))
                self._finishing[job_id] = finishing
                return await asyncio.shield(finishing)
            await asyncio.sleep(self._poll.total_seconds())

    async def logs(self, job_id: str) -> bytes:
        """Return what the task's steps wrote so far, in the order they ran."""
        await self._api.get_task(self._job, batch_id(job_id))
        return (await self._collect_logs(batch_id(job_id))).encode()

    async def cancel(self, job_id: str) -> None:
        """Stop the attempt's task (Batch terminates it; the script removes its containers)."""
        self._cancelled.add(job_id)
        await self._api.terminate_task(self._job, batch_id(job_id))

    async def list_jobs(self) -> list[JobResult]:
        """Return every attempt with a task in this executor's Batch job."""
        tasks = await self._api.list_tasks(self._job)
        return [
            self._results.get(t.display_name) or self._light_result(t.display_name, t)
            for t in sorted(tasks, key=lambda t: t.display_name)
        ]

    async def delete(self, job_id: str) -> None:
        """Delete the attempt's task and its files on the node, and forget it."""
        await self._api.delete_task(self._job, batch_id(job_id))
        self._results.pop(job_id, None)
        self._requests.pop(job_id, None)
        self._cancelled.discard(job_id)

    async def delete_batch_job(self) -> None:
        """Delete this executor's Batch job with all its tasks (the module was deleted)."""
        await self._api.delete_job(self._job)
        self._ready = False

    async def aclose(self) -> None:
        """Close the connections; tasks keep running."""
        await asyncio.gather(*self._finishing.values(), return_exceptions=True)
        await self._api.aclose()

    # -- helpers ------------------------------------------------------------------------------

    def _light_result(self, job_id: str, task: TaskView) -> JobResult:
        if task.state != "completed":
            state = JobState.RUNNING
        else:
            state = JobState.SUCCEEDED if task.exit_code == 0 else JobState.FAILED
        return JobResult(
            job_id=job_id,
            state=state,
            exit_code=task.exit_code,
            started_at=task.started or task.created,
        )

    def _request(self, job_id: str, task: TaskView | None) -> JobRequest:
        if (known := self._requests.get(job_id)) is not None:
            return known
        raw = task.environment.get(REQUEST_ENV, "") if task else ""
        try:
            request = JobRequest.model_validate_json(raw)
        except ValueError as err:
            raise errors.NotFoundError(f"task of {job_id} carries no Ion job request") from err
        self._requests[job_id] = request
        return request

    async def _refuse(self, job: JobRequest, reason: str) -> JobResult:
        log.warning("job %s cannot run: %s", job.job_id, reason)
        result = await _remote.store_failure(
            job,
            phase=JobPhase.PREPARE,
            reason=reason,
            exit_code=None,
            timed_out=False,
            output="",
            blobs=self._blobs,
            meta=self._meta,
            bus=self._bus,
            url_lifetime=self._url_lifetime,
        )
        self._results[job.job_id] = result
        return result

    async def _read(self, task_id: str, path: str, limit: int = REPORT_LIMIT_BYTES) -> str:
        data = await self._api.read_file(self._job, task_id, path, limit=limit)
        return data.decode("utf-8", errors="replace") if data else ""

    async def _finish(self, job_id: str, task: TaskView | None) -> JobResult:
        try:
            request = self._request(job_id, task)
            if task is None:
                reason = (
                    "the job was cancelled"
                    if job_id in self._cancelled
                    else "the task was deleted before it finished"
                )
                output, verdict = "", _Verdict(phase=JobPhase.MODULE, reason=reason)
            else:
                output = await self._collect_logs(task.id)
                verdict = await self._verdict(job_id, request, task)
            if verdict.report is not None:
                result = await _remote.store_commit(
                    request,
                    report=verdict.report,
                    succeeded=verdict.succeeded,
                    reason=verdict.reason,
                    output=output,
                    blobs=self._blobs,
                )
            else:
                result = await _remote.store_failure(
                    request,
                    phase=verdict.phase,
                    reason=verdict.reason,
                    exit_code=verdict.exit_code,
                    timed_out=verdict.timed_out,
                    output=output,
                    blobs=self._blobs,
                    meta=self._meta,
                    bus=self._bus,
                    url_lifetime=self._url_lifetime,
                )
            started = task.started or task.created if task else None
            result = result.model_copy(
                update={
                    "started_at": started or result.started_at,
                    "timed_out": result.timed_out or verdict.timed_out,
                    "finished_at": (task.ended if task else None) or datetime.now(UTC),
                }
            )
            self._results[job_id] = result
            return result
        finally:
            self._finishing.pop(job_id, None)

    async def _verdict(self, job_id: str, request: JobRequest, task: TaskView) -> _Verdict:
        steps = _steps(await self._read(task.id, STEPS_FILE))
        current = (
            JobPhase.COMMIT
            if WORKER in steps and steps[WORKER] == "0"
            else JobPhase.MODULE
            if PREPARE in steps and steps[PREPARE] == "0"
            else JobPhase.PREPARE
        )
        if job_id in self._cancelled and COMMIT not in steps:
            return _Verdict(phase=current, reason="the job was cancelled")
        if task.failure_code == "MaxWallClockTimeExpiry" or (
            COMMIT not in steps
            and task.max_wall_clock is not None
            and task.started is not None
            and task.ended is not None
            and task.ended - task.started >= task.max_wall_clock
        ):
            limit = task.max_wall_clock.total_seconds() if task.max_wall_clock else 0
            return _Verdict(
                phase=current,
                timed_out=True,
                reason=f"the Batch task ran past its max wall-clock time ({limit:g}s: the module's"
                " deadline plus ION_AZUREBATCH__DEADLINE_ALLOWANCE_SECONDS) and was stopped by"
                f" the service during {current}",
            )
        if task.failure_code == "TaskEnded" and COMMIT not in steps:
            return _Verdict(phase=current, reason=f"the Batch task was terminated during {current}")
        if COMMIT in steps:
            report = _json(await self._read(task.id, "wd/outcome/commit.json"))
            code = steps[COMMIT]
            if code == "0" and report.get("state", "SUCCEEDED") == "SUCCEEDED" and report:
                return _Verdict(phase=JobPhase.COMMIT, report=report, succeeded=True)
            log_tail = output_tail((await self._read(task.id, "wd/commit.log")).encode(), 500)
            reason = str(report.get("reason") or "") or (
                f"the commit step exited with code {code}: {log_tail or 'no output'}"
            )
            return _Verdict(phase=JobPhase.COMMIT, report=report, reason=reason)
        if WORKER in steps:
            code = steps[WORKER]
            if code == TIMED_OUT:
                return _Verdict(
                    phase=JobPhase.MODULE,
                    timed_out=True,
                    reason="module ran longer than its max execution time of "
                    f"{request.spec.max_execution_seconds:g}s and was stopped",
                )
            if code != "0":
                exit_code = int(code) if code.lstrip("-").isdigit() else None
                if exit_code == 125 and not (await self._read(task.id, "wd/worker.id")).strip():
                    return _Verdict(
                        phase=JobPhase.MODULE,
                        exit_code=exit_code,
                        reason="the module's container could not start (docker run exit 125)",
                    )
                return _Verdict(
                    phase=JobPhase.MODULE,
                    exit_code=exit_code,
                    reason=f"module exited with code {exit_code}",
                )
        if PREPARE in steps and steps[PREPARE] != "0":
            report = _json(await self._read(task.id, "wd/outcome/prepare.json"))
            log_tail = output_tail((await self._read(task.id, "wd/prepare.log")).encode(), 500)
            reason = str(report.get("reason") or "") or (
                f"the prepare step exited with code {steps[PREPARE]}: {log_tail or 'no output'}"
            )
            return _Verdict(phase=JobPhase.PREPARE, reason=reason)
        stderr = output_tail((await self._read(task.id, "stderr.txt")).encode(), 500)
        return _Verdict(
            phase=current,
            exit_code=None,
            reason=f"the Batch task ended with exit code {task.exit_code} during {current}"
            f" ({task.failure_code or 'no failure code'}): {stderr or 'no output'}",
        )

    async def _collect_logs(self, task_id: str) -> str:
        names = (
            "stdout.txt",
            "stderr.txt",
            f"wd/{PREPARE}.log",
            f"wd/{WORKER}.log",
            f"wd/{COMMIT}.log",
        )
        parts = await asyncio.gather(
            *(self._api.read_file(self._job, task_id, n, limit=LOG_LIMIT_BYTES) for n in names),
            return_exceptions=True,
        )
        sections = []
        for name, part in zip(names, parts, strict=True):
            if isinstance(part, BaseException):
                sections.append(f"[ion] --- {name} could not be read: {part} ---\n")
            elif part:
                text = part.decode("utf-8", errors="replace")
                title = name.removeprefix("wd/").removesuffix(".log")
                sections.append(f"[ion] --- {title} ---\n{text}")
        return "".join(s if s.endswith("\n") else s + "\n" for s in sections)


class _Verdict:
    """How a completed task's attempt ended."""

    def __init__(
        self,
        *,
        phase: JobPhase,
        reason: str = "",
        exit_code: int | None = None,
        timed_out: bool = False,
        report: dict[str, Any] | None = None,
        succeeded: bool = False,
    ) -> None:
        self.phase, self.reason, self.exit_code = phase, reason, exit_code
        self.timed_out, self.report, self.succeeded = timed_out, report, succeeded


def _steps(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        step, _, code = line.strip().partition(" ")
        if step:
            found[step] = code.strip()
    return found


def _json(text: str) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        found = json.loads(text)
        if isinstance(found, dict):
            return found
    return {}


def _owner(path: str) -> tuple[int, int]:
    found = Path(path).stat()
    return found.st_uid, found.st_gid


__all__ = ["AzureBatchExecutor"]
