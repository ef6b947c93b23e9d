"""Internal records the stores keep beside the 2018 documents: modules and job attempts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ion.core.modules import ModuleSpec


class AttemptState(StrEnum):
    """Where one attempt of one module on one event is."""

    PENDING = "PENDING"
    """Recorded, job not yet started."""
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    """The module exited 0 and its outputs were committed."""
    FAILED = "FAILED"
    """The module exited non-zero, timed out, or prepare/commit failed."""
    DEAD_LETTERED = "DEAD_LETTERED"
    """The last attempt failed; the event went to the dead-letter queue."""


TERMINAL_STATES = frozenset(
    {AttemptState.SUCCEEDED, AttemptState.FAILED, AttemptState.DEAD_LETTERED}
)


class JobAttempt(BaseModel):
    """One attempt of a module on an event; its id is the job name, stable across restarts."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    """Job name derived from (module, event id, attempt)."""
    module: str
    event_id: str
    correlation_id: str
    parent_event_id: str = ""
    event_type: str = ""
    attempt: int = 1
    state: AttemptState = AttemptState.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str = ""
    """Why the attempt failed, in one line."""
    logs_ref: str = ""
    """Blob key of the attempt's logs."""
    outputs: list[str] = Field(default_factory=list)
    """Blob keys of the files the attempt committed."""
    child_event_ids: list[str] = Field(default_factory=list)
    dispatcher: str = ""
    """Identity of the dispatcher that ran it."""

    def evolve(self, **changes: Any) -> JobAttempt:
        """Return a copy with `changes` applied."""
        return self.model_copy(update=changes)


class ModuleRecord(BaseModel):
    """A module as the registry keeps it: its spec, id and desired state."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    """Unique id (the name given at creation plus a suffix that never collides)."""
    spec: ModuleSpec
    provider: str = "local"
    created_at: datetime
    deleted: bool = False
    etag: str = ""
    """Opaque version for optimistic concurrency; set by the store."""
