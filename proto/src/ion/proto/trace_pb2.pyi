from ion.proto.v1 import types_pb2 as _types_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
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
    __slots__ = ("flowJSON", "flow")
    FLOWJSON_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    flowJSON: str
    flow: _types_pb2.Flow
    def __init__(self, flowJSON: _Optional[str] = ..., flow: _Optional[_Union[_types_pb2.Flow, _Mapping]] = ...) -> None: ...
