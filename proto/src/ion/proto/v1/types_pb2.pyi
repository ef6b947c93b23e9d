from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyValue(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("cpu", "memory", "gpu")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    cpu: str
    memory: str
    gpu: int
    def __init__(self, cpu: _Optional[str] = ..., memory: _Optional[str] = ..., gpu: _Optional[int] = ...) -> None: ...

class Toleration(_message.Message):
    __slots__ = ("key", "operator", "value", "effect", "toleration_seconds")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    TOLERATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: str
    value: str
    effect: str
    toleration_seconds: int
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[str] = ..., value: _Optional[str] = ..., effect: _Optional[str] = ..., toleration_seconds: _Optional[int] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("when", "executor", "cpu", "memory", "gpu")
    WHEN_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    when: str
    executor: str
    cpu: str
    memory: str
    gpu: int
    def __init__(self, when: _Optional[str] = ..., executor: _Optional[str] = ..., cpu: _Optional[str] = ..., memory: _Optional[str] = ..., gpu: _Optional[int] = ...) -> None: ...

class RouteChoice(_message.Message):
    __slots__ = ("index", "executor", "when", "resources", "notes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    index: int
    executor: str
    when: str
    resources: Resources
    notes: str
    def __init__(self, index: _Optional[int] = ..., executor: _Optional[str] = ..., when: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., notes: _Optional[str] = ...) -> None: ...

class ModuleInfo(_message.Message):
    __slots__ = ("id", "name", "subscribes_to", "publishes", "command", "image", "env", "instance_count", "retry_count", "retry_backoff_seconds", "max_execution_seconds", "resources", "max_in_flight", "working_dir", "provider", "created_at", "deleted", "status", "subscription", "handler_image", "image_pull_policy", "node_selector", "tolerations", "service_account", "secrets", "image_pull_secrets", "when", "routes")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class NodeSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBES_TO_FIELD_NUMBER: _ClassVar[int]
    PUBLISHES_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_EXECUTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HANDLER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULL_POLICY_FIELD_NUMBER: _ClassVar[int]
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    TOLERATIONS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULL_SECRETS_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    subscribes_to: str
    publishes: _containers.RepeatedScalarFieldContainer[str]
    command: _containers.RepeatedScalarFieldContainer[str]
    image: str
    env: _containers.ScalarMap[str, str]
    instance_count: int
    retry_count: int
    retry_backoff_seconds: float
    max_execution_seconds: float
    resources: Resources
    max_in_flight: int
    working_dir: str
    provider: str
    created_at: str
    deleted: bool
    status: str
    subscription: str
    handler_image: str
    image_pull_policy: str
    node_selector: _containers.ScalarMap[str, str]
    tolerations: _containers.RepeatedCompositeFieldContainer[Toleration]
    service_account: str
    secrets: _containers.RepeatedScalarFieldContainer[str]
    image_pull_secrets: _containers.RepeatedScalarFieldContainer[str]
    when: str
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., subscribes_to: _Optional[str] = ..., publishes: _Optional[_Iterable[str]] = ..., command: _Optional[_Iterable[str]] = ..., image: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., instance_count: _Optional[int] = ..., retry_count: _Optional[int] = ..., retry_backoff_seconds: _Optional[float] = ..., max_execution_seconds: _Optional[float] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., max_in_flight: _Optional[int] = ..., working_dir: _Optional[str] = ..., provider: _Optional[str] = ..., created_at: _Optional[str] = ..., deleted: _Optional[bool] = ..., status: _Optional[str] = ..., subscription: _Optional[str] = ..., handler_image: _Optional[str] = ..., image_pull_policy: _Optional[str] = ..., node_selector: _Optional[_Mapping[str, str]] = ..., tolerations: _Optional[_Iterable[_Union[Toleration, _Mapping]]] = ..., service_account: _Optional[str] = ..., secrets: _Optional[_Iterable[str]] = ..., image_pull_secrets: _Optional[_Iterable[str]] = ..., when: _Optional[str] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ...) -> None: ...

class EventInfo(_message.Message):
    __slots__ = ("event_id", "correlation_id", "parent_event_id", "published_by", "event_type", "document_type")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_BY_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    correlation_id: str
    parent_event_id: str
    published_by: str
    event_type: str
    document_type: str
    def __init__(self, event_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., parent_event_id: _Optional[str] = ..., published_by: _Optional[str] = ..., event_type: _Optional[str] = ..., document_type: _Optional[str] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("id", "attempt", "state", "started_at", "finished_at", "exit_code", "reason", "logs_ref", "dispatcher", "route")
    ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LOGS_REF_FIELD_NUMBER: _ClassVar[int]
    DISPATCHER_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    attempt: int
    state: str
    started_at: str
    finished_at: str
    exit_code: int
    reason: str
    logs_ref: str
    dispatcher: str
    route: RouteChoice
    def __init__(self, id: _Optional[str] = ..., attempt: _Optional[int] = ..., state: _Optional[str] = ..., started_at: _Optional[str] = ..., finished_at: _Optional[str] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., logs_ref: _Optional[str] = ..., dispatcher: _Optional[str] = ..., route: _Optional[_Union[RouteChoice, _Mapping]] = ...) -> None: ...

class FlowModuleRun(_message.Message):
    __slots__ = ("module", "status", "attempts", "duration_seconds", "outputs", "insights", "logs", "children", "reason")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INSIGHTS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    module: str
    status: str
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    duration_seconds: float
    outputs: _containers.RepeatedScalarFieldContainer[str]
    insights: _containers.RepeatedCompositeFieldContainer[KeyValue]
    logs: _containers.RepeatedScalarFieldContainer[str]
    children: _containers.RepeatedCompositeFieldContainer[FlowEvent]
    reason: str
    def __init__(self, module: _Optional[str] = ..., status: _Optional[str] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., duration_seconds: _Optional[float] = ..., outputs: _Optional[_Iterable[str]] = ..., insights: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., logs: _Optional[_Iterable[str]] = ..., children: _Optional[_Iterable[_Union[FlowEvent, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...

class FlowEvent(_message.Message):
    __slots__ = ("event_id", "event_type", "published_by", "files", "data", "triggered", "parent_event_id", "missing_document")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_BY_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_FIELD_NUMBER: _ClassVar[int]
    PARENT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MISSING_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    event_type: str
    published_by: str
    files: _containers.RepeatedScalarFieldContainer[str]
    data: _containers.RepeatedCompositeFieldContainer[KeyValue]
    triggered: _containers.RepeatedCompositeFieldContainer[FlowModuleRun]
    parent_event_id: str
    missing_document: bool
    def __init__(self, event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., published_by: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., data: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., triggered: _Optional[_Iterable[_Union[FlowModuleRun, _Mapping]]] = ..., parent_event_id: _Optional[str] = ..., missing_document: _Optional[bool] = ...) -> None: ...

class Flow(_message.Message):
    __slots__ = ("correlation_id", "root", "settled", "succeeded", "roots")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    ROOTS_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    root: FlowEvent
    settled: bool
    succeeded: bool
    roots: _containers.RepeatedCompositeFieldContainer[FlowEvent]
    def __init__(self, correlation_id: _Optional[str] = ..., root: _Optional[_Union[FlowEvent, _Mapping]] = ..., settled: _Optional[bool] = ..., succeeded: _Optional[bool] = ..., roots: _Optional[_Iterable[_Union[FlowEvent, _Mapping]]] = ...) -> None: ...
