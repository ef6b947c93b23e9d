from ion.proto.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModuleCreateRequest(_message.Message):
    __slots__ = ("modulename", "eventsubscriptions", "eventpublications", "moduleimage", "handlerimage", "instancecount", "retrycount", "provider", "maxexecutiontimemins", "configmap", "command", "env", "resources", "retry_backoff_seconds", "max_execution_seconds", "working_dir", "max_in_flight", "image_pull_policy", "node_selector", "tolerations", "service_account", "secrets", "image_pull_secrets", "when", "routes", "secret_env")
    class ConfigmapEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
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
    class SecretEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODULENAME_FIELD_NUMBER: _ClassVar[int]
    EVENTSUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    EVENTPUBLICATIONS_FIELD_NUMBER: _ClassVar[int]
    MODULEIMAGE_FIELD_NUMBER: _ClassVar[int]
    HANDLERIMAGE_FIELD_NUMBER: _ClassVar[int]
    INSTANCECOUNT_FIELD_NUMBER: _ClassVar[int]
    RETRYCOUNT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MAXEXECUTIONTIMEMINS_FIELD_NUMBER: _ClassVar[int]
    CONFIGMAP_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_EXECUTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULL_POLICY_FIELD_NUMBER: _ClassVar[int]
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    TOLERATIONS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULL_SECRETS_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    SECRET_ENV_FIELD_NUMBER: _ClassVar[int]
    modulename: str
    eventsubscriptions: str
    eventpublications: str
    moduleimage: str
    handlerimage: str
    instancecount: int
    retrycount: int
    provider: str
    maxexecutiontimemins: int
    configmap: _containers.ScalarMap[str, str]
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    resources: _types_pb2.Resources
    retry_backoff_seconds: float
    max_execution_seconds: float
    working_dir: str
    max_in_flight: int
    image_pull_policy: str
    node_selector: _containers.ScalarMap[str, str]
    tolerations: _containers.RepeatedCompositeFieldContainer[_types_pb2.Toleration]
    service_account: str
    secrets: _containers.RepeatedScalarFieldContainer[str]
    image_pull_secrets: _containers.RepeatedScalarFieldContainer[str]
    when: str
    routes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Route]
    secret_env: _containers.ScalarMap[str, str]
    def __init__(self, modulename: _Optional[str] = ..., eventsubscriptions: _Optional[str] = ..., eventpublications: _Optional[str] = ..., moduleimage: _Optional[str] = ..., handlerimage: _Optional[str] = ..., instancecount: _Optional[int] = ..., retrycount: _Optional[int] = ..., provider: _Optional[str] = ..., maxexecutiontimemins: _Optional[int] = ..., configmap: _Optional[_Mapping[str, str]] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., resources: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., retry_backoff_seconds: _Optional[float] = ..., max_execution_seconds: _Optional[float] = ..., working_dir: _Optional[str] = ..., max_in_flight: _Optional[int] = ..., image_pull_policy: _Optional[str] = ..., node_selector: _Optional[_Mapping[str, str]] = ..., tolerations: _Optional[_Iterable[_Union[_types_pb2.Toleration, _Mapping]]] = ..., service_account: _Optional[str] = ..., secrets: _Optional[_Iterable[str]] = ..., image_pull_secrets: _Optional[_Iterable[str]] = ..., when: _Optional[str] = ..., routes: _Optional[_Iterable[_Union[_types_pb2.Route, _Mapping]]] = ..., secret_env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModuleApplyRequest(_message.Message):
    __slots__ = ("module", "dry_run")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    module: ModuleCreateRequest
    dry_run: bool
    def __init__(self, module: _Optional[_Union[ModuleCreateRequest, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ModuleApplyResponse(_message.Message):
    __slots__ = ("name", "action", "changed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: str
    changed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., action: _Optional[str] = ..., changed: _Optional[_Iterable[str]] = ...) -> None: ...

class ModuleCreateResponse(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ModuleDeleteRequest(_message.Message):
    __slots__ = ("name", "force", "timeout_seconds", "dry_run")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    name: str
    force: bool
    timeout_seconds: float
    dry_run: bool
    def __init__(self, name: _Optional[str] = ..., force: _Optional[bool] = ..., timeout_seconds: _Optional[float] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ModuleDeleteResponse(_message.Message):
    __slots__ = ("name", "done", "message", "queued", "running", "drained", "cancelled", "dead_lettered", "already_deleted")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_DELETED_FIELD_NUMBER: _ClassVar[int]
    name: str
    done: bool
    message: str
    queued: int
    running: int
    drained: int
    cancelled: int
    dead_lettered: int
    already_deleted: bool
    def __init__(self, name: _Optional[str] = ..., done: _Optional[bool] = ..., message: _Optional[str] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ..., drained: _Optional[int] = ..., cancelled: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., already_deleted: _Optional[bool] = ...) -> None: ...

class ModuleGetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ModuleGetResponse(_message.Message):
    __slots__ = ("name", "status", "statusMessage", "dispatchers_running", "jobs_in_flight", "succeeded", "failed", "dead_lettered", "module", "queued", "dead_letter_queue", "running", "cancelled")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUSMESSAGE_FIELD_NUMBER: _ClassVar[int]
    DISPATCHERS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    JOBS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_QUEUE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    statusMessage: str
    dispatchers_running: int
    jobs_in_flight: int
    succeeded: int
    failed: int
    dead_lettered: int
    module: _types_pb2.ModuleInfo
    queued: int
    dead_letter_queue: int
    running: int
    cancelled: int
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., statusMessage: _Optional[str] = ..., dispatchers_running: _Optional[int] = ..., jobs_in_flight: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., module: _Optional[_Union[_types_pb2.ModuleInfo, _Mapping]] = ..., queued: _Optional[int] = ..., dead_letter_queue: _Optional[int] = ..., running: _Optional[int] = ..., cancelled: _Optional[int] = ...) -> None: ...

class ModuleListRequest(_message.Message):
    __slots__ = ("include_deleted",)
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    include_deleted: bool
    def __init__(self, include_deleted: _Optional[bool] = ...) -> None: ...

class ModuleListResponse(_message.Message):
    __slots__ = ("names", "modules")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    modules: _containers.RepeatedCompositeFieldContainer[_types_pb2.ModuleInfo]
    def __init__(self, names: _Optional[_Iterable[str]] = ..., modules: _Optional[_Iterable[_Union[_types_pb2.ModuleInfo, _Mapping]]] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
