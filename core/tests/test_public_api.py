"""`ion.core.__all__` is the public surface other members import; changing it is deliberate."""

from __future__ import annotations

import ion.core
import ion.core.backends
import ion.core.ports

CORE = [
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


def test_core_all_is_pinned() -> None:
    assert sorted(ion.core.__all__) == sorted(CORE)
    assert len(set(ion.core.__all__)) == len(ion.core.__all__)


def test_every_exported_name_exists() -> None:
    for module in (ion.core, ion.core.ports, ion.core.backends):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_backends_all_is_pinned() -> None:
    assert sorted(ion.core.backends.__all__) == [
        "local_path",
        "open_blobs",
        "open_bus",
        "open_meta",
    ]


def test_ports_all_is_pinned() -> None:
    assert sorted(ion.core.ports.__all__) == sorted(
        [
            "MAX_DELIVERY_COUNT_EXCEEDED",
            "BlobInfo",
            "BlobStore",
            "EventBus",
            "BackendRefs",
            "Executor",
            "JobPhase",
            "JobRequest",
            "JobResult",
            "JobState",
            "MetadataStore",
            "OutgoingMessage",
            "PeekedMessage",
            "ReceivedMessage",
            "SubscriptionCounts",
            "SubscriptionOptions",
        ]
    )
