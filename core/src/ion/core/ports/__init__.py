"""The four ports of Ion; every backend of a port passes its contract suite in ion.core.testing."""

from ion.core.ports.blobs import BlobInfo, BlobStore
from ion.core.ports.bus import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    EventBus,
    OutgoingMessage,
    PeekedMessage,
    ReceivedMessage,
    SubscriptionCounts,
    SubscriptionOptions,
)
from ion.core.ports.executor import (
    BackendRefs,
    Executor,
    JobPhase,
    JobRequest,
    JobResult,
    JobState,
)
from ion.core.ports.meta import MetadataStore

__all__ = [
    "MAX_DELIVERY_COUNT_EXCEEDED",
    "BackendRefs",
    "BlobInfo",
    "BlobStore",
    "EventBus",
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
