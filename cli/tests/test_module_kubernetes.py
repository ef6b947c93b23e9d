"""`ion module create` with the Kubernetes flags against `ion up`, and get/list showing them back.

Every module made here is deleted again, so the live module list other tests read is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

# No -m: against `ion up` (provider local) an image with --command is refused.
FLAGS = [
    "--handler-image",
    "registry.local:5000/ion/handler:0.9",
    "--image-pull-policy",
    "ifnotpresent",
    "--node-selector",
    "kubernetes.io/arch=amd64",
    "--node-selector",
    "pool=gpu",
    "--toleration",
    "nvidia.com/gpu:NoSchedule",
    "--toleration",
    "dedicated=ion:noexecute:60",
    "--toleration",
    "*",
    "--service-account",
    "ion-jobs",
    "--secret",
    "resize-credentials",
    "--secret",
    "shared.tokens",
    "--image-pull-secret",
    "acr-pull",
]

EXPECTED = {
    "handler_image": "registry.local:5000/ion/handler:0.9",
    "image_pull_policy": "IfNotPresent",
    "node_selector": {"kubernetes.io/arch": "amd64", "pool": "gpu"},
    "tolerations": [
        {
            "key": "nvidia.com/gpu",
            "operator": "Exists",
            "value": "",
            "effect": "NoSchedule",
            "toleration_seconds": None,
        },
        {
            "key": "dedicated",
            "operator": "Equal",
            "value": "ion",
            "effect": "NoExecute",
            "toleration_seconds": 60,
        },
        {"key": "", "operator": "Exists", "value": "", "effect": "", "toleration_seconds": None},
    ],
    "service_account": "ion-jobs",
    "secrets": ["resize-credentials", "shared.tokens"],
    "image_pull_secrets": ["acr-pull"],
}


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return result


def _one_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ion: error: invalid request: ")
    assert "Traceback" not in result.output
    return str(lines[0])


@pytest.fixture
def created(ion: Any) -> Iterator[list[str]]:
    """Ids of modules a test creates; each is deleted afterwards."""
    ids: list[str] = []
    yield ids
    for module_id in ids:
        _ok(ion("module", "delete", "-n", module_id))


def _create(ion: Any, created: list[str], name: str, *flags: str) -> str:
    result = _ok(
        ion("module", "create", "-n", name, "-i", f"{name}.in", "--command", "true", *flags)
    )
    module_id = result.stdout.strip().removeprefix("created module ")
    created.append(module_id)
    return str(module_id)


def test_create_with_every_kubernetes_flag_then_get_and_list_show_them(
    ion: Any, created: list[str]
) -> None:
    module_id = _create(ion, created, "kube-all", *FLAGS)
    got = json.loads(_ok(ion("module", "get", "-n", module_id, "-o", "json")).stdout)
    assert {key: got["module"][key] for key in EXPECTED} == EXPECTED
    as_yaml = yaml.safe_load(_ok(ion("module", "get", "-n", module_id, "-o", "yaml")).stdout)
    assert {key: as_yaml["module"][key] for key in EXPECTED} == EXPECTED
    listed = json.loads(_ok(ion("module", "list", "-o", "json")).stdout)
    (info,) = [m for m in listed if m["id"] == module_id]
    assert {key: info[key] for key in EXPECTED} == EXPECTED
    table = _ok(ion("module", "get", "-n", module_id)).stdout
    for text in (
        "registry.local:5000/ion/handler:0.9",
        "IfNotPresent",
        "kubernetes.io/arch=amd64, pool=gpu",
        "nvidia.com/gpu:NoSchedule, dedicated=ion:NoExecute:60, *",
        "ion-jobs",
        "resize-credentials, shared.tokens",
        "acr-pull",
    ):
        assert text in table, table


def test_without_the_flags_the_fields_are_empty(ion: Any, created: list[str]) -> None:
    module_id = _create(ion, created, "kube-none")
    module = json.loads(_ok(ion("module", "get", "-n", module_id, "-o", "json")).stdout)["module"]
    assert module["handler_image"] == "" and module["image_pull_policy"] == ""
    assert module["node_selector"] == {} and module["tolerations"] == []
    assert module["service_account"] == "" and module["secrets"] == []
    assert module["image_pull_secrets"] == []


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("dotjson/ion-handler", ""),  # the 2018 default: the executor's default
        ("dotjson/ion-handler:1.4", "dotjson/ion-handler:1.4"),
    ],
)
def test_handler_image_sets_handler_image(
    ion: Any, created: list[str], given: str, stored: str
) -> None:
    module_id = _create(ion, created, "kube-handler", "--handler-image", given)
    module = json.loads(_ok(ion("module", "get", "-n", module_id, "-o", "json")).stdout)["module"]
    assert module["handler_image"] == stored


@pytest.mark.parametrize(
    ("flags", "field", "words"),
    [
        (["--handler-image", "Ion Handler"], "handlerimage", "image reference"),
        (["-m", "team/app:"], "moduleimage", "image reference"),
        (["--node-selector", "a/b/c=x"], "node_selector", "prefix"),
        (["--node-selector", "pool=gpu pool"], "node_selector", "label value"),
        (["--toleration", "k=v"], "", ""),  # valid: the baseline of the rows below
        (["--toleration", "=v"], "tolerations.0.operator", "'Exists'"),
        (["--toleration", "k:NoSchedule:30"], "tolerations.0.toleration_seconds", "NoExecute"),
        (["--toleration", "k:Sometimes"], "tolerations.0.effect", "NoSchedule"),
        (["--toleration", "bad key"], "tolerations.0.key", "qualified name"),
        (["--service-account", "Ion_Jobs"], "service_account", "DNS-1123"),
        (["--secret", "a", "--secret", "a"], "secrets", "twice"),
        (["--image-pull-secret", "UPPER"], "image_pull_secrets", "DNS-1123"),
    ],
)
def test_bad_values_are_one_line_naming_the_field(
    ion: Any, created: list[str], flags: list[str], field: str, words: str
) -> None:
    if not field:
        _create(ion, created, "kube-good", *flags)
        return
    result = ion("module", "create", "-n", "kube-bad", "-i", "x", "--command", "true", *flags)
    line = _one_line(result)
    assert f"field {field!r}" in line and words in line, line


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--image-pull-policy", "Sometimes"], "'Sometimes' is not one of"),
        (["--node-selector", "pool"], "is not key=value"),
        (["--node-selector", "a=1", "--node-selector", "a=2"], "given twice"),
        (["--toleration", "k:NoExecute:60:1"], "too many ':'"),
        (["--toleration", "k:NoExecute:soon"], "whole number"),
    ],
)
def test_malformed_flags_are_usage_errors(ion: Any, flags: list[str], words: str) -> None:
    result = ion("module", "create", "-n", "kube-bad", "-i", "x", "--command", "true", *flags)
    assert result.exit_code == 2, result.output
    assert words in result.stderr and "Traceback" not in result.output
