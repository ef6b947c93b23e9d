from ion.proto.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetFlowRequest(_message.Message):
    __slots__ = ("correlationID", "wait_seconds")
    CORRELATIONID_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    correlationID: str
    wait_seconds: float
    def __init__(self, correlationID: _Optional[str] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class GetFlowResponse(_message.Message):
    __slots__ = ("flowJSON", "flow", "status")
    FLOWJSON_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    flowJSON: str
    flow: _types_pb2.Flow
    status: str
    def __init__(self, flowJSON: _Optional[str] = ..., flow: _Optional[_Union[_types_pb2.Flow, _Mapping]] = ..., status: _Optional[str] = ...) -> None: ...

class FlowSummary(_message.Message):
    __slots__ = ("correlation_id", "root_event_id", "root_event_type", "status", "modules", "runs", "started_at", "updated_at", "cancelled_at")
    class RunsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_AT_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    root_event_id: str
    root_event_type: str
    status: str
    modules: _containers.RepeatedScalarFieldContainer[str]
    runs: _containers.ScalarMap[str, int]
    started_at: str
    updated_at: str
    cancelled_at: str
    def __init__(self, correlation_id: _Optional[str] = ..., root_event_id: _Optional[str] = ..., root_event_type: _Optional[str] = ..., status: _Optional[str] = ..., modules: _Optional[_Iterable[str]] = ..., runs: _Optional[_Mapping[str, int]] = ..., started_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., cancelled_at: _Optional[str] = ...) -> None: ...

class ListFlowsRequest(_message.Message):
    __slots__ = ("status", "module", "root_event_type", "started_after", "started_before", "limit", "cursor", "id_prefix")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    ROOT_EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AFTER_FIELD_NUMBER: _ClassVar[int]
    STARTED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    status: _containers.RepeatedScalarFieldContainer[str]
    module: str
    root_event_type: str
    started_after: str
    started_before: str
    limit: int
    cursor: str
    id_prefix: str
    def __init__(self, status: _Optional[_Iterable[str]] = ..., module: _Optional[str] = ..., root_event_type: _Optional[str] = ..., started_after: _Optional[str] = ..., started_before: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., id_prefix: _Optional[str] = ...) -> None: ...

class ListFlowsResponse(_message.Message):
    __slots__ = ("flows", "next_cursor")
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    flows: _containers.RepeatedCompositeFieldContainer[FlowSummary]
    next_cursor: str
    def __init__(self, flows: _Optional[_Iterable[_Union[FlowSummary, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class CancelFlowRequest(_message.Message):
    __slots__ = ("correlation_id",)
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    def __init__(self, correlation_id: _Optional[str] = ...) -> None: ...

class CancelFlowResponse(_message.Message):
    __slots__ = ("flow", "already_settled")
    FLOW_FIELD_NUMBER: _ClassVar[int]
    ALREADY_SETTLED_FIELD_NUMBER: _ClassVar[int]
    flow: FlowSummary
    already_settled: bool
    def __init__(self, flow: _Optional[_Union[FlowSummary, _Mapping]] = ..., already_settled: _Optional[bool] = ...) -> None: ...

class GetLogRequest(_message.Message):
    __slots__ = ("id", "module", "offset")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    id: str
    module: str
    offset: int
    def __init__(self, id: _Optional[str] = ..., module: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class AttemptLog(_message.Message):
    __slots__ = ("attempt_id", "module", "event_id", "correlation_id", "attempt", "state", "content", "next_offset", "finished", "logs_ref", "note")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    LOGS_REF_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    module: str
    event_id: str
    correlation_id: str
    attempt: int
    state: str
    content: bytes
    next_offset: int
    finished: bool
    logs_ref: str
    note: str
    def __init__(self, attempt_id: _Optional[str] = ..., module: _Optional[str] = ..., event_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., attempt: _Optional[int] = ..., state: _Optional[str] = ..., content: _Optional[bytes] = ..., next_offset: _Optional[int] = ..., finished: _Optional[bool] = ..., logs_ref: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class GetLogResponse(_message.Message):
    __slots__ = ("logs",)
    LOGS_FIELD_NUMBER: _ClassVar[int]
    logs: _containers.RepeatedCompositeFieldContainer[AttemptLog]
    def __init__(self, logs: _Optional[_Iterable[_Union[AttemptLog, _Mapping]]] = ...) -> None: ...
