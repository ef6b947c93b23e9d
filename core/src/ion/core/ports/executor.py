"""The Executor port: where a job runs (a local process; Kubernetes Jobs and Batch tasks later).

A job is *prepare → module → commit*, and the executor runs all three: the dispatcher never
touches the job's files or calls the handler itself. It hands over a `JobRequest` (the event,
the module's spec, the attempt; backends by reference, never secrets) and gets back a
`JobResult` as data: how the job ended, in which phase it failed and why (with the last lines
of the module's output), whether commit refused the outputs, the child events it published and
where its logs are.

A job's id is derived from (module, event id, attempt), so `submit` of an id the executor knows
starts nothing new, and a dispatcher that restarts adopts the job instead of starting another.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from ion.core.events import Event
from ion.core.modules import ModuleSpec

REASON_TAIL_BYTES = 2048
"""At most this much of the module's output is quoted in a failure reason."""


class JobState(StrEnum):
    """Where a job is, as its executor sees it."""

    RUNNING = "RUNNING"
    """Submitted and not finished: preparing, running the module, or committing."""
    SUCCEEDED = "SUCCEEDED"
    """The module exited 0 and its outputs were committed."""
    FAILED = "FAILED"
    """A phase failed: see `JobResult.phase` and `JobResult.reason`."""


class JobPhase(StrEnum):
    """The three steps of a job, in order."""

    PREPARE = "prepare"
    MODULE = "module"
    COMMIT = "commit"


class BackendRefs(BaseModel):
    """Where the job's backends are, by URL; credentials come from the job's environment."""

    model_config = ConfigDict(frozen=True)

    bus_url: str = ""
    blobs_url: str = ""
    meta_url: str = ""


class JobRequest(BaseModel):
    """Everything an executor needs to run one attempt of a module on an event."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    """Derived from (module, event id, attempt); a Kubernetes-safe name."""
    attempt: int = Field(ge=1)
    event: Event
    """The incoming event."""
    spec: ModuleSpec
    working_dir: Path | None = None
    """Where a relative command resolves (the pipeline file's directory), if the spec has none."""
    backends: BackendRefs = Field(default_factory=BackendRefs)
    labels: dict[str, str] = Field(default_factory=dict)
    trace_context: dict[str, str] = Field(default_factory=dict)
    """W3C trace context (`traceparent`), so the job's spans join the dispatcher's."""

    @property
    def max_execution(self) -> timedelta:
        """How long the module may run before it is killed."""
        return self.spec.max_execution


class JobResult(BaseModel):
    """A job's state as last observed; once finished, its outcome as data."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    state: JobState
    phase: JobPhase | None = None
    """The phase that failed (None unless FAILED)."""
    exit_code: int | None = None
    timed_out: bool = False
    commit_refused: bool = False
    """The module exited 0 but commit refused its outputs (a bad event file, a path escape)."""
    reason: str = ""
    """Why it failed, for a person: the cause and the last lines of the module's output."""
    outputs: list[str] = Field(default_factory=list)
    """Blob keys of the committed files."""
    child_event_ids: list[str] = Field(default_factory=list)
    """Events the commit published."""
    logs_ref: str = ""
    """Blob key of the attempt's stored output (stdout, stderr and Ion's own notes)."""
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        """The job will not change any more."""
        return self.state != JobState.RUNNING


class Executor(Protocol):
    """Starts, watches, and stops jobs."""

    async def submit(self, job: JobRequest) -> JobResult:
        """Start the job, or return the state of the job with that id if it exists already."""
        ...

    async def status(self, job_id: str) -> JobResult:
        """Return the job's state; raise NotFoundError if the executor never saw it."""
        ...

    async def wait(self, job_id: str) -> JobResult:
        """Wait until the job has finished (deadline enforced) and return its result.

        After a restart this resumes a job another process started: it adopts a module still
        running, and commits one that finished but was not committed; it never starts a
        second copy of a module that ran.

        Raises:
            errors.NotFoundError: the executor never saw the job.
        """
        ...

    async def logs(self, job_id: str) -> bytes:
        """Return what the job wrote to stdout and stderr so far."""
        ...

    async def cancel(self, job_id: str) -> None:
        """Stop the job; succeeds if it has already finished."""
        ...

    async def list_jobs(self) -> list[JobResult]:
        """Return every job the executor knows (for reconciling after a restart)."""
        ...

    async def delete(self, job_id: str) -> None:
        """Forget a finished job and free its resources; succeeds if it is already gone."""
        ...


def output_tail(output: bytes, limit: int = REASON_TAIL_BYTES) -> str:
    """Return the last lines of a module's output, at most `limit` bytes, as one-line-safe text."""
    tail = output[-limit:]
    if len(output) > limit:
        cut = tail.find(b"\n")
        if 0 <= cut < len(tail) - 1:
            tail = tail[cut + 1 :]
    return tail.decode("utf-8", errors="replace").strip()


def with_output(reason: str, output: bytes) -> str:
    """Return `reason` followed by the module's last output lines, if it printed anything."""
    tail = output_tail(output)
    return f"{reason}; last output:\n{tail}" if tail else f"{reason} (no output)"


__all__ = [
    "REASON_TAIL_BYTES",
    "BackendRefs",
    "Executor",
    "JobPhase",
    "JobRequest",
    "JobResult",
    "JobState",
    "output_tail",
    "with_output",
]
