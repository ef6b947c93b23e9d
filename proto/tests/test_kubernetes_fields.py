"""Field numbers of the module spec's Kubernetes fields: pinned, since clients build on them.

The 2018 `handlerimage = 5` carries `handler_image`; the rest are Ion additions.
"""

from __future__ import annotations

from ion.proto import module_pb2
from ion.proto.v1 import types_pb2


def _fields(message: type) -> dict[str, tuple[int, bool]]:
    descriptor = message.DESCRIPTOR  # type: ignore[attr-defined]  # generated message classes
    return {f.name: (f.number, f.is_repeated) for f in descriptor.fields}


def test_create_request_numbers() -> None:
    fields = _fields(module_pb2.ModuleCreateRequest)
    assert {
        name: fields[name] for name in fields if fields[name][0] == 5 or 17 < fields[name][0] < 24
    } == {
        "handlerimage": (5, False),
        "image_pull_policy": (18, False),
        "node_selector": (19, True),  # a map is a repeated entry message on the wire
        "tolerations": (20, True),
        "service_account": (21, False),
        "secrets": (22, True),
        "image_pull_secrets": (23, True),
    }


def test_module_info_numbers() -> None:
    fields = _fields(types_pb2.ModuleInfo)
    assert {name: fields[name] for name in fields if 20 <= fields[name][0] < 27} == {
        "handler_image": (20, False),
        "image_pull_policy": (21, False),
        "node_selector": (22, True),
        "tolerations": (23, True),
        "service_account": (24, False),
        "secrets": (25, True),
        "image_pull_secrets": (26, True),
    }


def test_toleration_message() -> None:
    assert _fields(types_pb2.Toleration) == {
        "key": (1, False),
        "operator": (2, False),
        "value": (3, False),
        "effect": (4, False),
        "toleration_seconds": (5, False),
    }
    toleration = types_pb2.Toleration(key="k")
    assert not toleration.HasField("toleration_seconds")  # unset is not 0
    toleration.toleration_seconds = 0
    assert toleration.HasField("toleration_seconds")
