"""Ion's core library: the event model, module specs, the file contract, ports and backends.

Other Ion members import only the names listed here, the public subpackages
`ion.core.ports`, `ion.core.backends` and `ion.core.testing`, and the flow tree modules
`ion.core.flow` (model and builder), `ion.core.flowindex` (flow statuses, summaries and
listing queries; its models are exported here too), `ion.core.flowtree` (terminal rendering;
needs rich), `ion.core.rules` (the dispatch rules' language) and `ion.core.routing` (rules applied to an event).
"""

from ion.core import errors
from ion.core.clock import Clock, ManualClock, SystemClock
from ion.core.documents import FlowDocument
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
from ion.core.flowindex import FlowPage, FlowQuery, FlowStatus, FlowSummary
from ion.core.modules import (
    ModuleSpec,
    PipelineSpec,
    Resources,
    Route,
    RouteResources,
    Toleration,
)
from ion.core.records import (
    TERMINAL_STATES,
    AttemptState,
    JobAttempt,
    ModuleRecord,
    RouteChoice,
    RunStatus,
)

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
    "FlowDocument",
    "FlowPage",
    "FlowQuery",
    "FlowStatus",
    "FlowSummary",
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
    "Route",
    "RouteChoice",
    "RouteResources",
    "RunStatus",
    "SystemClock",
    "Toleration",
    "child_event_id",
    "errors",
    "insight_id",
    "module_logs_id",
    "new_root_event",
    "pairs",
]
