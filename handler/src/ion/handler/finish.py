"""Finish a job: commit a successful module's outputs, store the attempt's log, report the result.

This is the job-side end of *prepare → module → commit* for every executor: the local executor
calls it in its own process, a Kubernetes or Batch job in its commit step. The result is data
(`JobResult`): the phase that failed and a reason a person can act on (with the last lines of
the module's output), or the outputs and child events of a successful commit. A refused commit
is a failure everywhere: in the result, in the stored log and in the `modulelogs` document.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ion.core import errors, naming
from ion.core.events import Context, DocumentType, ModuleLogs, module_logs_id
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.executor import JobPhase, JobResult, JobState, with_output
from ion.core.ports.meta import MetadataStore
from ion.handler.commit import commit
from ion.handler.job import HandlerJob

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleEnd:
    """How the module step ended."""

    exit_code: int | None = None
    timed_out: bool = False
    error: str = ""
    """Why, when the exit code alone does not say: killed at its deadline, could not start,
    vanished without an exit code."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """Which attempt a job is, and where its output goes."""

    job_id: str
    number: int
    log_path: Path
    started_at: datetime | None = None


def _module_failure(ended: ModuleEnd) -> str:
    return ended.error or f"module exited with code {ended.exit_code}"


async def finish_job(
    job: HandlerJob,
    attempt: Attempt,
    *,
    ended: ModuleEnd | None,
    prepare_error: str = "",
    blobs: BlobStore,
    meta: MetadataStore,
    bus: EventBus,
    url_lifetime: timedelta,
) -> JobResult:
    """Commit if the module exited 0, store the attempt's log and `modulelogs`; return the result.

    `ended` is None when prepare failed (`prepare_error` says why). Safe to repeat after a
    crash: commit and the log writes are idempotent.

    Raises:
        errors.TransientError: a backend failed while storing; the job can be finished again.
    """
    key = naming.logs_key(job.event.correlation_id, job.event.event_id, job.module, attempt.number)
    result: JobResult
    if ended is None or ended.error or ended.timed_out or ended.exit_code != 0:
        if ended is None:
            phase, cause = JobPhase.PREPARE, f"prepare failed: {prepare_error}"
        else:
            phase, cause = JobPhase.MODULE, _module_failure(ended)
        output = await asyncio.to_thread(_read, attempt.log_path) if ended else b""
        reason = cause if ended is None else with_output(cause, output)
        result = JobResult(
            job_id=attempt.job_id,
            state=JobState.FAILED,
            phase=phase,
            exit_code=ended.exit_code if ended else None,
            timed_out=bool(ended and ended.timed_out),
            reason=reason,
        )
        await _note(attempt.log_path, cause)
    else:
        # The log is stored while the outputs commit, and its modulelogs document is written
        # with theirs; a failure stores the log again with the note, and the document again
        # with `succeeded: false`.
        upload = asyncio.create_task(blobs.put_file(key, attempt.log_path))
        try:
            committed = await commit(
                job,
                blobs=blobs,
                meta=meta,
                bus=bus,
                url_lifetime=url_lifetime,
                logs=await _logs_document(
                    job, attempt, key, succeeded=True, blobs=blobs, url_lifetime=url_lifetime
                ),
            )
        except BaseException as err:
            await asyncio.gather(upload, return_exceptions=True)
            if isinstance(err, errors.TransientError) or not isinstance(err, Exception):
                raise
            refused = isinstance(err, errors.ValidationError)
            if refused:
                reason = f"commit refused the outputs: {err}"
            elif isinstance(err, errors.IonError):
                reason = f"commit failed: {err}"
            else:  # a bug, not the module's fault: fail the attempt and say why
                log.exception("commit of %s failed unexpectedly", attempt.job_id)
                reason = f"commit failed unexpectedly: {type(err).__name__}: {err}"
            result = JobResult(
                job_id=attempt.job_id,
                state=JobState.FAILED,
                phase=JobPhase.COMMIT,
                exit_code=0,
                commit_refused=refused,
                reason=reason,
            )
            await _note(attempt.log_path, reason)
        else:
            await upload
            result = JobResult(
                job_id=attempt.job_id,
                state=JobState.SUCCEEDED,
                exit_code=0,
                outputs=committed.outputs,
                child_event_ids=[e.event_id for e in committed.events],
            )
    if result.state != JobState.SUCCEEDED:
        await blobs.put_file(key, attempt.log_path)
        await meta.upsert_module_logs(
            await _logs_document(
                job, attempt, key, succeeded=False, blobs=blobs, url_lifetime=url_lifetime
            )
        )
    return result.model_copy(
        update={
            "logs_ref": key,
            "started_at": attempt.started_at,
            "finished_at": datetime.now(UTC),
        }
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


async def _note(log_path: Path, text: str) -> None:
    """Append Ion's own line to the attempt's log (the file is created if the module made none)."""

    def append() -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as f:
            f.write(f"\n[ion] {text}\n".encode())

    await asyncio.to_thread(append)


async def _logs_document(
    job: HandlerJob,
    attempt: Attempt,
    key: str,
    *,
    succeeded: bool,
    blobs: BlobStore,
    url_lifetime: timedelta,
) -> ModuleLogs:
    doc_id = module_logs_id(job.module, job.event.event_id, attempt.number)
    return ModuleLogs(
        id=doc_id,
        context=Context(
            name=job.module,
            event_id=job.event.event_id,
            correlation_id=job.event.correlation_id,
            parent_event_id=job.event.context.parent_event_id,
        ).as_document(DocumentType.MODULE_LOGS),
        desc=doc_id,
        logs=await blobs.url_for(key, expires_in=url_lifetime),
        succeeded=succeeded,
    )
