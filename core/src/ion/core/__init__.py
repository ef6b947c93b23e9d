"""Ion's core library: the event model, module specs, the file contract, ports and backends.

Other Ion members import only the names listed here and the public subpackages
`ion.core.ports`, `ion.core.backends` and `ion.core.testing`.
"""

from ion.core import errors
from ion.core.clock import Clock, ManualClock, SystemClock
from ion.core.events import (
    Context,
    CorrelationId,
    DocumentType,
    Event,
    EventId,
    EventMeta,
    Insight,
    KeyValuePair,
    ModuleLogs,
    ModuleName,
    child_event_id,
    insight_id,
    module_logs_id,
    new_root_event,
    pairs,
)
from ion.core.modules import ModuleSpec, PipelineSpec, Resources
from ion.core.records import TERMINAL_STATES, AttemptState, JobAttempt, ModuleRecord

__all__ = [
    "TERMINAL_STATES",
    "AttemptState",
    "Clock",
    "Context",
    "CorrelationId",
    "DocumentType",
    "Event",
    "EventId",
    "EventMeta",
    "Insight",
    "JobAttempt",
    "KeyValuePair",
    "ManualClock",
    "ModuleLogs",
    "ModuleName",
    "ModuleRecord",
    "ModuleSpec",
    "PipelineSpec",
    "Resources",
    "SystemClock",
    "child_event_id",
    "errors",
    "insight_id",
    "module_logs_id",
    "new_root_event",
    "pairs",
]
