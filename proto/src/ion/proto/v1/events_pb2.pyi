from ion.proto.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class File(_message.Message):
    __slots__ = ("name", "content")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    content: bytes
    def __init__(self, name: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class PublishEventRequest(_message.Message):
    __slots__ = ("event_type", "data", "files", "correlation_id")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    data: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyValue]
    files: _containers.RepeatedCompositeFieldContainer[File]
    correlation_id: str
    def __init__(self, event_type: _Optional[str] = ..., data: _Optional[_Iterable[_Union[_types_pb2.KeyValue, _Mapping]]] = ..., files: _Optional[_Iterable[_Union[File, _Mapping]]] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class PublishEventResponse(_message.Message):
    __slots__ = ("event", "event_json")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_JSON_FIELD_NUMBER: _ClassVar[int]
    event: _types_pb2.EventInfo
    event_json: str
    def __init__(self, event: _Optional[_Union[_types_pb2.EventInfo, _Mapping]] = ..., event_json: _Optional[str] = ...) -> None: ...

class GetEventRequest(_message.Message):
    __slots__ = ("event_id", "correlation_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    correlation_id: str
    def __init__(self, event_id: _Optional[str] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class GetEventResponse(_message.Message):
    __slots__ = ("event", "files", "data", "files_prefix", "event_meta_json")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FILES_PREFIX_FIELD_NUMBER: _ClassVar[int]
    EVENT_META_JSON_FIELD_NUMBER: _ClassVar[int]
    event: _types_pb2.EventInfo
    files: _containers.RepeatedScalarFieldContainer[str]
    data: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyValue]
    files_prefix: str
    event_meta_json: str
    def __init__(self, event: _Optional[_Union[_types_pb2.EventInfo, _Mapping]] = ..., files: _Optional[_Iterable[str]] = ..., data: _Optional[_Iterable[_Union[_types_pb2.KeyValue, _Mapping]]] = ..., files_prefix: _Optional[str] = ..., event_meta_json: _Optional[str] = ...) -> None: ...

class BusMessage(_message.Message):
    __slots__ = ("message_id", "body", "delivery_count", "enqueued_at", "sequence_number", "dead_letter_reason", "dead_letter_description", "topic", "subscription", "properties")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_REASON_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    body: str
    delivery_count: int
    enqueued_at: str
    sequence_number: int
    dead_letter_reason: str
    dead_letter_description: str
    topic: str
    subscription: str
    properties: _containers.ScalarMap[str, str]
    def __init__(self, message_id: _Optional[str] = ..., body: _Optional[str] = ..., delivery_count: _Optional[int] = ..., enqueued_at: _Optional[str] = ..., sequence_number: _Optional[int] = ..., dead_letter_reason: _Optional[str] = ..., dead_letter_description: _Optional[str] = ..., topic: _Optional[str] = ..., subscription: _Optional[str] = ..., properties: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PeekRequest(_message.Message):
    __slots__ = ("event_type", "subscription", "module", "max_messages", "dead_letter")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    subscription: str
    module: str
    max_messages: int
    dead_letter: bool
    def __init__(self, event_type: _Optional[str] = ..., subscription: _Optional[str] = ..., module: _Optional[str] = ..., max_messages: _Optional[int] = ..., dead_letter: _Optional[bool] = ...) -> None: ...

class PeekResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[BusMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[BusMessage, _Mapping]]] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("module", "max_messages")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    module: str
    max_messages: int
    def __init__(self, module: _Optional[str] = ..., max_messages: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("module", "message", "event")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    module: str
    message: BusMessage
    event: _types_pb2.EventInfo
    def __init__(self, module: _Optional[str] = ..., message: _Optional[_Union[BusMessage, _Mapping]] = ..., event: _Optional[_Union[_types_pb2.EventInfo, _Mapping]] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters",)
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ...) -> None: ...

class ReplayDeadLetterRequest(_message.Message):
    __slots__ = ("module", "message_id")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    module: str
    message_id: str
    def __init__(self, module: _Optional[str] = ..., message_id: _Optional[str] = ...) -> None: ...

class ReplayDeadLetterResponse(_message.Message):
    __slots__ = ("module", "message_id")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    module: str
    message_id: str
    def __init__(self, module: _Optional[str] = ..., message_id: _Optional[str] = ...) -> None: ...
