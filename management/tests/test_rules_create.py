"""Create with dispatch rules: rules and routes reach the registry and come back in ModuleInfo;
a bad rule is refused naming the request field and column; a route to an executor the server's
dispatchers lack is refused naming the ones they have."""

from __future__ import annotations

from pathlib import Path

import pytest

from ion.core import errors
from ion.core.config import DispatcherSettings, IonSettings
from ion.management import convert
from ion.management.deployers import Runtime
from ion.management.deployers.inprocess import InProcessDeployer
from ion.management.registry import ModuleRegistry
from ion.management.testing import StubPlatform
from ion.proto import module_pb2
from ion.proto.v1 import types_pb2


def _request(**fields: object) -> module_pb2.ModuleCreateRequest:
    return module_pb2.ModuleCreateRequest(
        modulename="transcode", eventsubscriptions="media.ingested", command=["true"], **fields
    )


def test_rules_travel_from_request_to_module_info_and_back() -> None:
    request = _request(
        when="files.count > 0",
        routes=[
            types_pb2.Route(when="files.size > 1GiB", executor="azurebatch", gpu=1),
            types_pb2.Route(executor="kubernetes", cpu="500m"),
        ],
    )
    spec = convert.spec_from_request(request)
    assert spec.when == "files.count > 0"
    assert [(r.executor, r.resources.gpu, r.resources.cpu) for r in spec.routes] == [
        ("azurebatch", 1, ""),
        ("kubernetes", None, "500m"),
    ]
    from datetime import UTC, datetime

    from ion.core import ModuleRecord

    record = ModuleRecord(id="transcode-abcde", spec=spec, created_at=datetime.now(UTC))
    info = convert.module_info(record, Runtime())
    assert info.when == "files.count > 0"
    assert [(r.executor, r.HasField("gpu")) for r in info.routes] == [
        ("azurebatch", True),
        ("kubernetes", False),
    ]


@pytest.mark.parametrize(
    ("fields", "field", "rule", "says"),
    [
        ({"when": 'data.mime == "video")'}, "when", "InvalidExpression", "at column 21"),
        (
            {"routes": [types_pb2.Route(when="files.count >", executor="local")]},
            "routes.0.when",
            "InvalidExpression",
            "at column 14",
        ),
        (
            {"routes": [types_pb2.Route(executor="local"), types_pb2.Route(executor="x")]},
            "routes",
            "UnreachableRoute",
            "route 0 has no 'when'",
        ),
    ],
)
def test_bad_rules_are_refused_naming_the_request_field(
    fields: dict[str, object], field: str, rule: str, says: str
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        convert.spec_from_request(_request(**fields))
    assert (caught.value.field, caught.value.rule) == (field, rule)
    assert says in str(caught.value) and str(caught.value).startswith(f"field {field!r}")


async def test_create_refuses_a_route_to_an_executor_the_server_lacks(tmp_path: Path) -> None:
    settings = IonSettings(home=tmp_path, dispatcher=DispatcherSettings(routes_to="local-gpu"))
    async with StubPlatform(settings) as platform:
        registry = ModuleRegistry(
            platform.meta,
            platform.bus,
            InProcessDeployer(platform),  # type: ignore[arg-type]  # the stub is a Platform
            route_executors=settings.dispatcher.route_executors,
        )
        bad = convert.spec_from_request(
            _request(routes=[types_pb2.Route(when="true", executor="azurebatch")])
        )
        with pytest.raises(errors.ValidationError) as caught:
            await registry.create(bad)
        assert caught.value.field == "routes.0.executor"
        assert caught.value.rule == "UnknownExecutor"
        assert "it has: local, local-gpu" in str(caught.value)
        assert await platform.meta.list_modules() == []
        good = convert.spec_from_request(
            _request(routes=[types_pb2.Route(when="true", executor="local-gpu")])
        )
        record = await registry.create(good)
        assert record.spec.routes[0].executor == "local-gpu"
