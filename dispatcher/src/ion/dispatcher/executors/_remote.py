"""Finishing an attempt that ran elsewhere (a Batch task, a Kubernetes pod), in the dispatcher.

A remote job's commit step writes the attempt's documents itself and reports them; the
executor then only stores the job's whole output as the attempt's log. When prepare or the
module failed, commit never ran, so the executor finishes the attempt here with the handler's
own `finish_job`: the log, `modulelogs` and the result, with the module's last output quoted.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ion.core import naming
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.executor import JobPhase, JobRequest, JobResult, JobState
from ion.core.ports.meta import MetadataStore
from ion.handler.finish import Attempt, ModuleEnd, finish_job
from ion.handler.job import HandlerJob


async def store_commit(
    job: JobRequest,
    *,
    report: dict[str, Any],
    succeeded: bool,
    reason: str,
    output: str,
    blobs: BlobStore,
) -> JobResult:
    """The commit step ran and wrote its documents: store the whole output as the attempt's
    log and return the result its report gives."""
    key = str(report.get("logs_ref") or "") or naming.logs_key(
        job.event.correlation_id, job.event.event_id, job.spec.name, job.attempt
    )
    with tempfile.TemporaryDirectory(prefix="ion-remote-") as tmp:
        path = Path(tmp) / "attempt.log"
        path.write_text(output)
        await blobs.put_file(key, path)
    return JobResult(
        job_id=job.job_id,
        state=JobState.SUCCEEDED if succeeded else JobState.FAILED,
        phase=None if succeeded else JobPhase.COMMIT,
        exit_code=0,
        commit_refused=bool(report.get("commit_refused")),
        reason="" if succeeded else reason,
        outputs=[str(o) for o in report.get("outputs") or []],
        child_event_ids=[str(i) for i in report.get("child_event_ids") or []],
        logs_ref=key,
        finished_at=datetime.now(UTC),
    )


async def store_failure(
    job: JobRequest,
    *,
    phase: JobPhase,
    reason: str,
    exit_code: int | None,
    timed_out: bool,
    output: str,
    blobs: BlobStore,
    meta: MetadataStore,
    bus: EventBus,
    url_lifetime: timedelta,
) -> JobResult:
    """Prepare or the module failed (commit never ran): store the log and `modulelogs`."""
    handler_job = HandlerJob.for_request(job, Path("/ion"))
    with tempfile.TemporaryDirectory(prefix="ion-remote-") as tmp:
        path = Path(tmp) / "attempt.log"
        path.write_text(output)
        attempt = Attempt(job_id=job.job_id, number=job.attempt, log_path=path)
        if phase == JobPhase.PREPARE:
            return await finish_job(
                handler_job,
                attempt,
                ended=None,
                prepare_error=reason,
                blobs=blobs,
                meta=meta,
                bus=bus,
                url_lifetime=url_lifetime,
            )
        plain = reason == f"module exited with code {exit_code}"
        result = await finish_job(
            handler_job,
            attempt,
            ended=ModuleEnd(
                exit_code=exit_code, timed_out=timed_out, error="" if plain else reason
            ),
            blobs=blobs,
            meta=meta,
            bus=bus,
            url_lifetime=url_lifetime,
        )
    return result.model_copy(update={"phase": phase})
