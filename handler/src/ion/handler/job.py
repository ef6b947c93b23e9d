"""What the handler needs to know about one job: the module, its incoming event, its directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ion.core.contract import JobLayout
from ion.core.events import Event
from ion.core.ports.executor import JobRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class HandlerJob:
    """One module's run on one event."""

    module: str
    event: Event
    """The incoming event that triggered the module."""
    publishes: frozenset[str]
    """Event types the module may raise."""
    layout: JobLayout

    @classmethod
    def for_request(cls, request: JobRequest, base: Path) -> HandlerJob:
        """The handler's view of an executor's job request, its directory at `base`."""
        return cls(
            module=request.spec.name,
            event=request.event,
            publishes=frozenset(request.spec.publishes),
            layout=JobLayout(base),
        )

    @property
    def output_prefix(self) -> str:
        """Blob key prefix of this job's outputs: `<correlationId>/<eventId>/<module>`."""
        return f"{self.event.correlation_id}/{self.event.event_id}/{self.module}"
