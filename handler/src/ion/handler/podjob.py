"""The job's steps inside a pod: `ion-handler job prepare` and `ion-handler job commit`.

A Kubernetes Job (or a Batch task) runs *prepare → module → commit* as three containers that
share the job directory (`/ion`). The executor hands the whole `JobRequest` to the two handler
containers as JSON in `ION_JOB_REQUEST` (it holds no credentials: those come from the
backends' Secret). Each step ends by writing its outcome as JSON to the container's termination
message file, where the executor reads it from the pod's status without fetching logs:

- prepare: `{"step": "prepare", "ok": false, "reason": ...}` when it failed (exit 1; the
  module then never runs);
- commit: the attempt's `JobResult` (exit 0 when it succeeded, 1 when commit failed or
  refused the outputs), its lists cut to fit Kubernetes' 4 KiB limit (`"truncated": true`).

The module's own output is in its container's log, which the executor stores as the attempt's
log once the pod has finished.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ion.core import entrypoint, errors, logs, telemetry
from ion.core.backends import open_blobs, open_bus, open_meta
from ion.core.config import IonSettings
from ion.core.contract import JobLayout
from ion.core.ports.executor import JobRequest, JobState
from ion.handler.finish import Attempt, ModuleEnd, finish_job
from ion.handler.job import HandlerJob
from ion.handler.prepare import prepare

REQUEST_ENV = "ION_JOB_REQUEST"
"""Environment variable holding the job's `JobRequest` as JSON."""
TERMINATION_LOG_ENV = "ION_TERMINATION_LOG"
"""Overrides where the outcome is written (default `/dev/termination-log`)."""
TERMINATION_LIMIT = 4096
"""Kubernetes keeps at most this many bytes of a termination message."""

PROGRAM = "ion-handler"


def read_request(environ: dict[str, str] | None = None) -> JobRequest:
    """Return the job's request from `ION_JOB_REQUEST`.

    Raises:
        errors.ConfigError: it is missing or not a valid request.
    """
    raw = (os.environ if environ is None else environ).get(REQUEST_ENV, "")
    if not raw:
        raise errors.ConfigError(
            f"{REQUEST_ENV} is not set: `ion-handler job` runs inside a job pod made by Ion's "
            "executor; use `ion-handler prepare|commit` with flags to run a step by hand"
        )
    try:
        return JobRequest.model_validate_json(raw)
    except ValueError as err:
        raise errors.ConfigError(f"{REQUEST_ENV} is not a valid job request: {err}") from err


def fit_message(outcome: dict[str, Any], limit: int = TERMINATION_LIMIT) -> str:
    """Return `outcome` as JSON of at most `limit` bytes, cutting its lists and reason if needed."""
    text = json.dumps(outcome, ensure_ascii=False)
    if len(text.encode()) <= limit:
        return text
    cut = dict(outcome, truncated=True)
    for key in ("outputs", "child_event_ids"):
        cut[key] = []
        text = json.dumps(cut, ensure_ascii=False)
        if len(text.encode()) <= limit:
            return text
    reason = str(cut.get("reason", ""))
    budget = max(0, limit - len(text.encode()) + len(reason.encode()) - 64)
    cut["reason"] = reason.encode()[-budget:].decode(errors="ignore") if budget else ""
    return json.dumps(cut, ensure_ascii=False)


def _write_outcome(outcome: dict[str, Any]) -> None:
    path = Path(os.environ.get(TERMINATION_LOG_ENV, "/dev/termination-log"))
    try:
        path.write_text(fit_message(outcome))
    except OSError as err:  # not in a pod: say it on stderr instead
        print(f"{PROGRAM}: cannot write the outcome to {path}: {err}", file=sys.stderr)
    print(json.dumps(outcome, ensure_ascii=False), file=sys.stderr)


def _handler_job(request: JobRequest, settings: IonSettings) -> HandlerJob:
    return HandlerJob.for_request(request, Path(settings.handler.base_dir))


def _open_to_all(layout: JobLayout) -> None:
    # The module's image may run as another user than the handler's: it must be able to read
    # its input and write its outputs in the shared directory.
    for directory in (layout.base / "in", layout.in_data, layout.base / "out"):
        directory.chmod(0o755)
    for directory in (layout.out_data, layout.out_events):
        directory.chmod(0o777)
    layout.out_insights.chmod(0o666)


def prepare_step() -> int:
    """Prepare the job directory for the module; on failure say why in the outcome, exit 1."""

    async def go(request: JobRequest, settings: IonSettings) -> int:
        job = _handler_job(request, settings)
        blobs, meta = open_blobs(settings.blobs_url), open_meta(settings.meta_url)
        try:
            with logs.bind(
                correlation_id=job.event.correlation_id,
                event_id=job.event.event_id,
                module=job.module,
            ):
                try:
                    await prepare(job, blobs=blobs, meta=meta)
                    await asyncio.to_thread(_open_to_all, job.layout)
                except (errors.IonError, OSError) as err:
                    _write_outcome({"step": "prepare", "ok": False, "reason": str(err)})
                    return 1
                return 0
        finally:
            await blobs.aclose()
            await meta.aclose()

    return _run(go)


def commit_step() -> int:
    """Commit the module's outputs and publish its events; the result is the outcome."""

    async def go(request: JobRequest, settings: IonSettings) -> int:
        job = _handler_job(request, settings)
        bus, blobs, meta = (
            open_bus(settings.bus_url),
            open_blobs(settings.blobs_url),
            open_meta(settings.meta_url),
        )
        log_path = Path(tempfile.mkdtemp(prefix="ion-commit-")) / "attempt.log"
        log_path.write_text("[ion] the module's output is in the job pod's `worker` log\n")
        try:
            with logs.bind(
                correlation_id=job.event.correlation_id,
                event_id=job.event.event_id,
                module=job.module,
            ):
                result = await finish_job(
                    job,
                    Attempt(
                        job_id=request.job_id,
                        number=request.attempt,
                        log_path=log_path,
                        started_at=datetime.now(UTC),
                    ),
                    ended=ModuleEnd(exit_code=0),
                    blobs=blobs,
                    meta=meta,
                    bus=bus,
                    url_lifetime=timedelta(hours=settings.blobs.sas_lifetime_hours),
                )
        except errors.IonError as err:  # a backend failed: the attempt fails and is retried
            _write_outcome(
                {"step": "commit", "state": "FAILED", "phase": "commit", "reason": str(err)}
            )
            return 1
        finally:
            for backend in (bus, blobs, meta):
                await backend.aclose()
        outcome = result.model_dump(
            mode="json",
            include={
                "state",
                "phase",
                "commit_refused",
                "reason",
                "outputs",
                "child_event_ids",
                "logs_ref",
            },
        )
        _write_outcome({"step": "commit", **outcome})
        return 0 if result.state == JobState.SUCCEEDED else 1

    return _run(go)


def _run(step: Any) -> int:
    try:
        settings = entrypoint.start(PROGRAM)
        request = read_request()
        # The step's spans join the dispatcher's attempt: the request carries its context (and
        # the executor set TRACEPARENT to the same).
        carrier = request.trace_context or telemetry.environment_carrier()
        with telemetry.parent(carrier):
            return int(asyncio.run(step(request, settings)))
    except errors.IonError as err:
        _write_outcome({"step": "setup", "ok": False, "state": "FAILED", "reason": str(err)})
        return 1
