"""Field numbers of the dispatch rules on the wire (`when`, `routes`, an attempt's route): pinned."""

from __future__ import annotations

from ion.proto import module_pb2
from ion.proto.v1 import types_pb2


def _fields(message: type) -> dict[str, tuple[int, bool]]:
    descriptor = message.DESCRIPTOR  # type: ignore[attr-defined]  # generated message classes
    return {f.name: (f.number, f.is_repeated) for f in descriptor.fields}


def test_create_request_and_module_info_numbers() -> None:
    create = _fields(module_pb2.ModuleCreateRequest)
    assert {n: create[n] for n in ("when", "routes")} == {"when": (24, False), "routes": (25, True)}
    info = _fields(types_pb2.ModuleInfo)
    assert {n: info[n] for n in ("when", "routes")} == {"when": (27, False), "routes": (28, True)}
    assert _fields(types_pb2.Attempt)["route"] == (10, False)


def test_route_messages() -> None:
    assert _fields(types_pb2.Route) == {
        "when": (1, False),
        "executor": (2, False),
        "cpu": (3, False),
        "memory": (4, False),
        "gpu": (5, False),
    }
    assert _fields(types_pb2.RouteChoice) == {
        "index": (1, False),
        "executor": (2, False),
        "when": (3, False),
        "resources": (4, False),
        "notes": (5, False),
    }
    route = types_pb2.Route(executor="local")
    assert not route.HasField("gpu")  # unset (the module's) is not 0
    choice = types_pb2.RouteChoice(executor="local")
    assert not choice.HasField("index")  # unset: the default, not route 0
