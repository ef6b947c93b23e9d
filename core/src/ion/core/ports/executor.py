"""The Executor port: where a module's job runs (a local process now; Kubernetes, Batch later).

A job's id is derived from (module, event id, attempt), so `submit` of an id that exists is a
no-op and a dispatcher that restarts adopts the running job instead of starting another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class JobState(StrEnum):
    """Where a job is, as its executor sees it."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    """Exited non-zero, or killed at its deadline (then `timed_out` is set)."""
    LOST = "LOST"
    """Known but neither running nor finished with a recorded result (e.g. killed with -9)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequest:
    """Everything an executor needs to start one module run."""

    job_id: str
    module: str
    command: Sequence[str] = ()
    image: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    base_dir: Path
    """The job's directory, given to the module as HANDLER_BASE_DIR (or mounted at /ion)."""
    working_dir: Path | None = None
    max_execution: timedelta = timedelta(minutes=10)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatus:
    """A job's state as last observed."""

    job_id: str
    state: JobState
    exit_code: int | None = None
    timed_out: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Executor(Protocol):
    """Starts, watches, and stops jobs."""

    async def submit(self, job: JobRequest) -> JobStatus:
        """Start the job, or return the status of the job with that id if it exists already."""
        ...

    async def status(self, job_id: str) -> JobStatus:
        """Return the job's status; raise NotFoundError if the executor never saw it."""
        ...

    async def wait(self, job_id: str) -> JobStatus:
        """Wait until the job is no longer running (deadline enforced) and return its status."""
        ...

    async def logs(self, job_id: str) -> bytes:
        """Return what the job wrote to stdout and stderr so far."""
        ...

    async def cancel(self, job_id: str) -> None:
        """Stop the job; succeeds if it has already finished."""
        ...

    async def list_jobs(self) -> list[JobStatus]:
        """Return every job the executor knows (for reconciling after a restart)."""
        ...

    async def delete(self, job_id: str) -> None:
        """Forget a finished job and free its resources; succeeds if it is already gone."""
        ...
