"""The Kubernetes fields of a module spec through ModuleService: Create stores them, Get and List
give them back, a bad value is INVALID_ARGUMENT naming the request field and the rule; and the
conversion both ways (request → spec → ModuleInfo) loses nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from ion.core import ModuleRecord, ModuleSpec, Toleration, errors
from ion.core.config import IonSettings
from ion.management import convert
from ion.management.deployers import Runtime
from ion.proto import module_pb2, module_pb2_grpc
from ion.proto.v1 import types_pb2


def _request(**overrides: Any) -> module_pb2.ModuleCreateRequest:
    fields: dict[str, Any] = {
        "modulename": "resize",
        "eventsubscriptions": "image.uploaded",
        "command": ["python", "resize.py"],
        "moduleimage": "registry.local:5000/team/resize:1.2",
        "handlerimage": "registry.local:5000/ion/handler:0.9",
        "image_pull_policy": "always",
        "node_selector": {"kubernetes.io/arch": "amd64", "pool": "gpu"},
        "tolerations": [
            types_pb2.Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
            types_pb2.Toleration(
                key="dedicated", value="ion", effect="NoExecute", toleration_seconds=0
            ),
            types_pb2.Toleration(operator="Exists"),
        ],
        "service_account": "ion-jobs",
        "secrets": ["resize-credentials", "shared.tokens"],
        "image_pull_secrets": ["acr-pull"],
    }
    fields.update(overrides)
    return module_pb2.ModuleCreateRequest(**fields)


EXPECTED_TOLERATIONS = [
    Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
    Toleration(key="dedicated", value="ion", effect="NoExecute", toleration_seconds=0),
    Toleration(operator="Exists"),
]


def _assert_kubernetes_fields(spec: ModuleSpec) -> None:
    assert spec.image == "registry.local:5000/team/resize:1.2"
    assert spec.handler_image == "registry.local:5000/ion/handler:0.9"
    assert spec.image_pull_policy == "Always"
    assert spec.node_selector == {"kubernetes.io/arch": "amd64", "pool": "gpu"}
    assert spec.tolerations == EXPECTED_TOLERATIONS
    assert spec.service_account == "ion-jobs"
    assert spec.secrets == ["resize-credentials", "shared.tokens"]
    assert spec.image_pull_secrets == ["acr-pull"]


def _assert_info(info: types_pb2.ModuleInfo) -> None:
    assert info.image == "registry.local:5000/team/resize:1.2"
    assert info.handler_image == "registry.local:5000/ion/handler:0.9"
    assert info.image_pull_policy == "Always"
    assert dict(info.node_selector) == {"kubernetes.io/arch": "amd64", "pool": "gpu"}
    assert [
        (t.key, t.operator, t.value, t.effect, t.HasField("toleration_seconds"))
        for t in info.tolerations
    ] == [
        ("nvidia.com/gpu", "Exists", "", "NoSchedule", False),
        ("dedicated", "Equal", "ion", "NoExecute", True),
        ("", "Exists", "", "", False),
    ]
    assert info.tolerations[1].toleration_seconds == 0
    assert info.service_account == "ion-jobs"
    assert list(info.secrets) == ["resize-credentials", "shared.tokens"]
    assert list(info.image_pull_secrets) == ["acr-pull"]


# --- conversion, no server ---------------------------------------------------------------------


def test_a_request_becomes_a_spec_with_every_kubernetes_field() -> None:
    _assert_kubernetes_fields(convert.spec_from_request(_request()))


def test_spec_to_module_info_and_back_is_lossless() -> None:
    spec = convert.spec_from_request(_request())
    record = ModuleRecord(id="resize-abcde", spec=spec, created_at=datetime.now(UTC))
    info = convert.module_info(record, Runtime())
    _assert_info(info)
    # ModuleInfo → wire bytes → ModuleInfo → a create request again → the same spec.
    again = types_pb2.ModuleInfo.FromString(info.SerializeToString())
    request = module_pb2.ModuleCreateRequest(
        modulename=again.name,
        eventsubscriptions=again.subscribes_to,
        command=again.command,
        moduleimage=again.image,
        handlerimage=again.handler_image,
        image_pull_policy=again.image_pull_policy,
        node_selector=again.node_selector,
        tolerations=again.tolerations,
        service_account=again.service_account,
        secrets=again.secrets,
        image_pull_secrets=again.image_pull_secrets,
    )
    assert convert.spec_from_request(request) == spec


def test_no_kubernetes_fields_means_empty_ones() -> None:
    request = module_pb2.ModuleCreateRequest(
        modulename="resize", eventsubscriptions="image.uploaded", command=["true"]
    )
    spec = convert.spec_from_request(request)
    assert (spec.handler_image, spec.image_pull_policy, spec.service_account) == ("", "", "")
    assert (spec.node_selector, spec.tolerations, spec.secrets, spec.image_pull_secrets) == (
        {},
        [],
        [],
        [],
    )


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("dotjson/ion-handler", ""),  # the 2018 CLI's default: the 2018 Go handler, not chosen
        (" dotjson/ion-handler ", ""),
        ("", ""),
        ("dotjson/ion-handler:2", "dotjson/ion-handler:2"),
        ("registry.local/ion-handler", "registry.local/ion-handler"),
    ],
)
def test_handlerimage_field_5_is_the_handler_image(given: str, stored: str) -> None:
    assert convert.spec_from_request(_request(handlerimage=given)).handler_image == stored


BAD = [
    pytest.param({"handlerimage": "Ion Handler"}, "handlerimage", "InvalidImageReference"),
    pytest.param({"moduleimage": "team/app:"}, "moduleimage", "InvalidImageReference"),
    pytest.param({"image_pull_policy": "sometimes"}, "image_pull_policy", "InvalidPullPolicy"),
    pytest.param({"node_selector": {"a/b/c": "x"}}, "node_selector", "InvalidQualifiedName"),
    pytest.param({"node_selector": {"pool": "-gpu"}}, "node_selector", "InvalidLabelValue"),
    pytest.param(
        {"tolerations": [types_pb2.Toleration(value="x")]},
        "tolerations.0.operator",
        "EmptyKeyNeedsExists",
    ),
    pytest.param(
        {"tolerations": [types_pb2.Toleration(key="k", operator="Exists", value="x")]},
        "tolerations.0.value",
        "ExistsTakesNoValue",
    ),
    pytest.param(
        {"tolerations": [types_pb2.Toleration(key="k", toleration_seconds=5)]},
        "tolerations.0.toleration_seconds",
        "SecondsNeedNoExecute",
    ),
    pytest.param(
        {"tolerations": [types_pb2.Toleration(key="k", operator="equal")]},
        "tolerations.0.operator",
        "literal_error",
    ),
    pytest.param(
        {"tolerations": [types_pb2.Toleration(key="k", effect="NoExecute", toleration_seconds=-1)]},
        "tolerations.0.toleration_seconds",
        "greater_than_equal",
    ),
    pytest.param({"service_account": "Jobs"}, "service_account", "InvalidDnsSubdomain"),
    pytest.param({"secrets": ["a", "a"]}, "secrets", "DuplicateName"),
    pytest.param({"secrets": ["a_b"]}, "secrets", "InvalidDnsSubdomain"),
    pytest.param({"image_pull_secrets": ["UPPER"]}, "image_pull_secrets", "InvalidDnsSubdomain"),
]


@pytest.mark.parametrize(("overrides", "field", "rule"), BAD)
def test_conversion_names_the_request_field_and_rule(
    overrides: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        convert.spec_from_request(_request(**overrides))
    assert (caught.value.field, caught.value.rule) == (field, rule)
    assert str(caught.value).startswith(f"field {field!r}: ")


# --- over gRPC, against a real server ----------------------------------------------------------


@pytest.fixture
def stub(channel: Any) -> Any:
    return module_pb2_grpc.ModuleServiceStub(channel)


@pytest.fixture
def settings(tmp_path: Path) -> IonSettings:
    # an image-only module passes the local provider's door check when a container runtime is
    # configured; nothing runs it here
    return IonSettings(home=tmp_path / "home", dispatcher={"container_runtime": "docker"})


async def test_create_stores_them_and_get_and_list_show_them(stub: Any, running: Any) -> None:
    # image only: the local provider refuses an image together with a command
    created = await stub.Create(_request(command=[]), timeout=5)
    record = await running.stub.platform.meta.get_module(created.name)
    _assert_kubernetes_fields(record.spec)
    got = await stub.Get(module_pb2.ModuleGetRequest(name=created.name), timeout=5)
    _assert_info(got.module)
    listed = await stub.List(module_pb2.ModuleListRequest(), timeout=5)
    (info,) = [m for m in listed.modules if m.id == created.name]
    _assert_info(info)


@pytest.mark.parametrize(("overrides", "field", "rule"), BAD[:1] + BAD[3:4] + BAD[5:6] + BAD[11:12])
async def test_create_refuses_a_bad_value_with_field_and_rule(
    stub: Any, running: Any, overrides: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Create(_request(**overrides), timeout=5)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"field {field!r}" in err.details()
    trailers = dict(err.trailing_metadata() or ())
    assert (trailers.get("ion-field"), trailers.get("ion-rule")) == (field, rule)
    assert await running.stub.platform.meta.list_modules() == []
