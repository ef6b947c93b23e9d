"""Internal records the stores keep beside the 2018 documents: modules and job attempts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ion.core.modules import ModuleSpec, Resources


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
    FILTERED = "FILTERED"
    """The module's `when` rule did not match the event: completed, never run."""
    CANCELLED = "CANCELLED"
    """Stopped on purpose before it finished (its module was deleted with --force, or its flow
    was cancelled): the job was killed or never started, and nothing more will run for it."""


TERMINAL_STATES = frozenset(
    {
        AttemptState.SUCCEEDED,
        AttemptState.FAILED,
        AttemptState.DEAD_LETTERED,
        AttemptState.FILTERED,
        AttemptState.CANCELLED,
    }
)


class RunStatus(StrEnum):
    """Where one module's handling of one event is, all its attempts taken together.

    What a flow shows for each run (`ion.core.flow`), on the wire (`ion.v1.FlowModuleRun.status`)
    and in every output. A run ends SUCCEEDED or DEAD_LETTERED; the others are on the way.
    """

    PENDING = "PENDING"
    """The module subscribes to the event; no attempt has started yet."""
    RUNNING = "RUNNING"
    """An attempt is running."""
    RETRYING = "RETRYING"
    """An attempt failed and another will follow after the backoff."""
    SUCCEEDED = "SUCCEEDED"
    """An attempt succeeded: the module exited 0 and its outputs and events were committed."""
    DEAD_LETTERED = "DEAD_LETTERED"
    """The last attempt failed with no retry left; the event is in the module's dead letters."""
    FILTERED = "FILTERED"
    """The module's `when` rule did not match the event, so it never ran: a deliberate end,
    distinct from success and from an event no module subscribes to."""
    CANCELLED = "CANCELLED"
    """Stopped on purpose (its module was deleted with --force, or its flow was cancelled):
    nothing more runs for it, and it is not a success."""

    @property
    def settled(self) -> bool:
        """Nothing more will happen to this run unless someone acts (a dead-letter replay)."""
        return self in (
            RunStatus.SUCCEEDED,
            RunStatus.DEAD_LETTERED,
            RunStatus.FILTERED,
            RunStatus.CANCELLED,
        )

    @classmethod
    def of(cls, attempts: Iterable[JobAttempt]) -> RunStatus:
        """Return the status of a run from its attempts (PENDING when there are none)."""
        last = max(attempts, key=lambda a: a.attempt, default=None)
        if last is None:
            return cls.PENDING
        match last.state:
            case AttemptState.SUCCEEDED:
                return cls.SUCCEEDED
            case AttemptState.DEAD_LETTERED:
                return cls.DEAD_LETTERED
            case AttemptState.FILTERED:
                return cls.FILTERED
            case AttemptState.CANCELLED:
                return cls.CANCELLED
            case AttemptState.FAILED:
                return cls.RETRYING  # the dispatcher writes DEAD_LETTERED when no retry is left
            case AttemptState.RUNNING:
                return cls.RUNNING
            case AttemptState.PENDING:
                return cls.PENDING if last.attempt <= 1 else cls.RETRYING


class RouteChoice(BaseModel):
    """Where one attempt runs and why: recorded on the attempt, shown in flows."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    index: int | None = None
    """The matching route's position in `routes` (from 0); None: no route matched (or the
    module has none), so the dispatcher's own executor runs it."""
    executor: str
    """The executor's name."""
    when: str = ""
    """The matching route's rule ('' for a default route or no route)."""
    resources: Resources = Resources()
    """The resources the job asked for: the module's, with the route's fields in their place."""
    notes: str = ""
    """What the rules could not compare for this event (a missing key ...), if anything."""

    def describe(self) -> str:
        """One line for a flow tree: `route 0 → azurebatch (gpu=1) when files.size > 1GiB`."""
        head = "default" if self.index is None else f"route {self.index}"
        parts = [f"{head} → {self.executor}"]
        asked = [
            f"{name}={value}"
            for name, value in (
                ("cpu", self.resources.cpu),
                ("memory", self.resources.memory),
                ("gpu", self.resources.gpu or ""),
            )
            if value
        ]
        if asked:
            parts.append(f"({', '.join(asked)})")
        if self.when:
            parts.append(f"when {self.when}")
        return " ".join(parts)


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
    route: RouteChoice | None = None
    """Where it ran, by the module's routes (None when the module has none)."""

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
