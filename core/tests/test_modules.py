"""ModuleSpec and PipelineSpec: every broken rule is refused with the field that broke it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ion.core import errors
from ion.core.modules import ModuleSpec, PipelineSpec, Toleration


def spec(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "resize",
        "subscribes_to": "image.new",
        "publishes": ["image.small"],
        "command": ["python", "resize.py"],
    }
    raw.update(changes)
    return raw


def refused(raw: Any) -> errors.ValidationError:
    with pytest.raises(errors.ValidationError) as caught:
        ModuleSpec.parse(raw)
    return caught.value


def test_a_valid_spec_parses_with_defaults() -> None:
    parsed = ModuleSpec.parse(spec())
    assert parsed.name == "resize"
    assert parsed.retry_count == 1
    assert parsed.max_attempts == 2
    assert parsed.max_execution == timedelta(seconds=600)
    assert parsed.retry_backoff == timedelta(seconds=1)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Resize", id="uppercase"),
        pytest.param("a" * 41, id="41-chars"),
        pytest.param("re--size", id="double-dash"),
        pytest.param("-resize", id="leading-dash"),
        pytest.param("resize-", id="trailing-dash"),
        pytest.param("1resize", id="leading-digit"),
        pytest.param("re_size", id="underscore"),
        pytest.param("re.size", id="dot"),
        pytest.param("re size", id="space"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_module_names_are_refused(name: str) -> None:
    err = refused(spec(name=name))
    assert err.field == "name"
    assert "lowercase letters" in str(err)


@pytest.mark.parametrize("name", ["a", "resize", "a" * 40, "img-resize-2", "x9"])
def test_good_module_names_are_accepted(name: str) -> None:
    assert ModuleSpec.parse(spec(name=name)).name == name


@pytest.mark.parametrize(
    "event_type", ["has space", ".dot-first", "", "a" * 121, "slash/type", "ü"]
)
def test_bad_subscribed_event_types_are_refused(event_type: str) -> None:
    err = refused(spec(subscribes_to=event_type))
    assert err.field == "subscribes_to"


@pytest.mark.parametrize("event_type", ["frontapi.new_link", "file_downloaded", "A-1", "a" * 120])
def test_good_event_types_are_accepted(event_type: str) -> None:
    assert ModuleSpec.parse(spec(subscribes_to=event_type)).subscribes_to == event_type


def test_a_bad_published_event_type_is_refused() -> None:
    err = refused(spec(publishes=["image.small", "not ok"]))
    assert err.field == "publishes"
    assert "'not ok'" in str(err)


def test_duplicate_publishes_are_refused() -> None:
    err = refused(spec(publishes=["image.small", "image.small"]))
    assert err.field == "publishes"
    assert "twice" in str(err)


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "", "A=B"])
def test_bad_env_var_names_are_refused(key: str) -> None:
    err = refused(spec(env={"GOOD": "1", key: "v"}))
    assert err.field == "env"


def test_env_values_must_be_strings() -> None:
    assert refused(spec(env={"A": 1})).field.startswith("env")


def test_neither_command_nor_image_is_refused() -> None:
    raw = spec()
    del raw["command"]
    err = refused(raw)
    assert err.field == "image"
    assert "command" in str(err)
    assert err.field in str(err)


def test_image_only_or_command_only_is_fine() -> None:
    raw = spec(image="registry.local/resize:1")
    del raw["command"]
    assert ModuleSpec.parse(raw).image == "registry.local/resize:1"
    assert ModuleSpec.parse(spec()).command == ["python", "resize.py"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retry_count", -1),
        ("retry_count", 101),
        ("retry_backoff_seconds", -0.5),
        ("max_execution_seconds", 0),
        ("max_execution_seconds", -3),
        ("instance_count", 0),
        ("max_in_flight", 0),
    ],
)
def test_out_of_range_numbers_are_refused(field: str, value: float) -> None:
    assert refused(spec(**{field: value})).field == field


def test_bad_resources_name_the_nested_field() -> None:
    assert refused(spec(resources={"gpu": -1})).field == "resources.gpu"
    assert refused(spec(resources={"disk": "1Gi"})).field == "resources.disk"


def test_unknown_fields_are_refused() -> None:
    err = refused(spec(subscribes="typo"))
    assert err.field == "subscribes"


def test_missing_required_field_is_named() -> None:
    raw = spec()
    del raw["subscribes_to"]
    assert refused(raw).field == "subscribes_to"


def test_backoff_doubles_from_the_first_retry() -> None:
    parsed = ModuleSpec.parse(spec(retry_count=4, retry_backoff_seconds=1.5))
    assert parsed.backoff_before(1) == timedelta(0)
    assert [parsed.backoff_before(a).total_seconds() for a in (2, 3, 4, 5)] == [1.5, 3, 6, 12]


def test_zero_backoff_stays_zero() -> None:
    parsed = ModuleSpec.parse(spec(retry_backoff_seconds=0))
    assert parsed.backoff_before(5) == timedelta(0)


# --- pipeline files --------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


GOOD = """\
name: demo
root_event: media.submitted
root_data: {count: "3"}
modules:
  - name: ingest
    subscribes_to: media.submitted
    publishes: [media.ingested]
    command: ["python", "ingest.py"]
  - name: thumbs
    subscribes_to: media.ingested
    command: ["python", "thumbs.py"]
"""


def test_a_valid_pipeline_loads_with_its_directory(tmp_path: Path) -> None:
    pipeline = PipelineSpec.load(write(tmp_path, GOOD))
    assert [m.name for m in pipeline.modules] == ["ingest", "thumbs"]
    assert pipeline.root_data == {"count": "3"}
    assert pipeline.base_dir == tmp_path.resolve()


def test_the_example_pipeline_loads() -> None:
    path = Path(__file__).parents[2] / "examples" / "media-classifiers" / "pipeline.yaml"
    pipeline = PipelineSpec.load(path)
    assert len(pipeline.modules) >= 4


def test_duplicate_module_names_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace("name: thumbs", "name: ingest")
    with pytest.raises(errors.ValidationError) as caught:
        PipelineSpec.load(write(tmp_path, text))
    assert caught.value.field == "modules"
    assert "repeated: ingest" in str(caught.value)


def test_a_pipeline_without_modules_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        PipelineSpec.load(write(tmp_path, "name: x\nroot_event: a\nmodules: []\n"))
    assert caught.value.field == "modules"


def test_a_bad_module_inside_a_pipeline_names_its_position(tmp_path: Path) -> None:
    text = GOOD.replace("name: thumbs", "name: Thumbs")
    with pytest.raises(errors.ValidationError) as caught:
        PipelineSpec.load(write(tmp_path, text))
    assert caught.value.field == "modules.1.name"
    assert "pipeline.yaml" in str(caught.value)


def test_a_bad_root_event_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("root_event: media.submitted", "root_event: 'bad event'")
    with pytest.raises(errors.ValidationError) as caught:
        PipelineSpec.load(write(tmp_path, text))
    assert caught.value.field == "root_event"


def test_invalid_yaml_is_a_validation_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        PipelineSpec.load(write(tmp_path, "name: [unclosed\nmodules: {"))
    assert caught.value.rule == "yaml"
    assert "not valid YAML" in str(caught.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_a_pipeline_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        PipelineSpec.load(write(tmp_path, text))
    assert caught.value.rule == "type"


def test_a_missing_pipeline_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFoundError, match="does not exist"):
        PipelineSpec.load(tmp_path / "nope.yaml")


# --- Kubernetes scheduling and image fields ---------------------------------------------------

KUBERNETES = {
    "image": "registry.local:5000/team/resize:1.2",
    "handler_image": "registry.local:5000/ion/handler:0.9",
    "image_pull_policy": "ifnotpresent",
    "node_selector": {"kubernetes.io/arch": "amd64", "pool": "gpu"},
    "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "ion", "effect": "NoExecute", "toleration_seconds": 60},
        {"operator": "Exists"},
    ],
    "service_account": "ion-jobs",
    "secrets": ["resize-credentials", "shared.tokens"],
    "image_pull_secrets": ["acr-pull"],
}


def test_kubernetes_fields_default_to_empty() -> None:
    parsed = ModuleSpec.parse(spec())
    assert (parsed.handler_image, parsed.image_pull_policy, parsed.service_account) == ("", "", "")
    assert (parsed.node_selector, parsed.tolerations) == ({}, [])
    assert (parsed.secrets, parsed.image_pull_secrets) == ([], [])


def test_kubernetes_fields_parse_and_survive_a_round_trip() -> None:
    parsed = ModuleSpec.parse(spec(**KUBERNETES))
    assert parsed.handler_image == "registry.local:5000/ion/handler:0.9"
    assert parsed.image_pull_policy == "IfNotPresent"
    assert parsed.node_selector == {"kubernetes.io/arch": "amd64", "pool": "gpu"}
    assert parsed.tolerations == [
        Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
        Toleration(key="dedicated", value="ion", effect="NoExecute", toleration_seconds=60),
        Toleration(operator="Exists"),
    ]
    assert parsed.tolerations[1].operator == "Equal"
    assert parsed.service_account == "ion-jobs"
    assert parsed.secrets == ["resize-credentials", "shared.tokens"]
    assert parsed.image_pull_secrets == ["acr-pull"]
    assert ModuleSpec.parse(parsed.model_dump()) == parsed
    assert ModuleSpec.model_validate_json(parsed.model_dump_json()) == parsed


def test_the_spec_and_its_tolerations_are_frozen() -> None:
    parsed = ModuleSpec.parse(spec(**KUBERNETES))
    with pytest.raises(Exception, match="frozen"):
        parsed.service_account = "other"  # type: ignore[misc]  # frozen: the point of the test
    with pytest.raises(Exception, match="frozen"):
        parsed.tolerations[0].key = "other"  # type: ignore[misc]  # frozen: the point of the test


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Always", "Always"),
        ("always", "Always"),
        ("IFNOTPRESENT", "IfNotPresent"),
        ("never", "Never"),
        ("", ""),
    ],
)
def test_pull_policies_are_normalized(given: str, stored: str) -> None:
    assert ModuleSpec.parse(spec(image_pull_policy=given)).image_pull_policy == stored


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        pytest.param({"image": "Team/Resize"}, "image", "InvalidImageReference", id="image"),
        pytest.param({"image": "resize 1"}, "image", "InvalidImageReference", id="image-space"),
        pytest.param(
            {"handler_image": "handler:"}, "handler_image", "InvalidImageReference", id="handler"
        ),
        pytest.param(
            {"handler_image": "h" * 256}, "handler_image", "InvalidImageReference", id="long"
        ),
        pytest.param(
            {"image_pull_policy": "Sometimes"},
            "image_pull_policy",
            "InvalidPullPolicy",
            id="pull-policy",
        ),
        pytest.param(
            {"node_selector": {"a/b/c": "x"}},
            "node_selector",
            "InvalidQualifiedName",
            id="selector-key",
        ),
        pytest.param(
            {"node_selector": {"pool": "gpu pool"}},
            "node_selector",
            "InvalidLabelValue",
            id="selector-value",
        ),
        pytest.param(
            {"node_selector": {"k": 1}}, "node_selector.k", "string_type", id="selector-type"
        ),
        pytest.param(
            {"service_account": "Jobs"}, "service_account", "InvalidDnsSubdomain", id="account"
        ),
        pytest.param({"secrets": ["a_b"]}, "secrets", "InvalidDnsSubdomain", id="secret"),
        pytest.param({"secrets": ["a", "a"]}, "secrets", "DuplicateName", id="secret-twice"),
        pytest.param({"secrets": [""]}, "secrets", "InvalidDnsSubdomain", id="secret-empty"),
        pytest.param(
            {"image_pull_secrets": ["-x"]},
            "image_pull_secrets",
            "InvalidDnsSubdomain",
            id="pull-secret",
        ),
        pytest.param(
            {"image_pull_secrets": ["x", "x"]},
            "image_pull_secrets",
            "DuplicateName",
            id="pull-secret-twice",
        ),
        pytest.param(
            {"secrets": [f"s{i}" for i in range(101)]}, "secrets", "too_long", id="many-secrets"
        ),
        pytest.param(
            {"tolerations": [{"key": "a/b/c", "operator": "Exists"}]},
            "tolerations.0.key",
            "InvalidQualifiedName",
            id="toleration-key",
        ),
        pytest.param(
            {"tolerations": [{"key": "k", "operator": "Exists"}, {"value": "x"}]},
            "tolerations.1.operator",
            "EmptyKeyNeedsExists",
            id="empty-key-equal",
        ),
        pytest.param(
            {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
            "tolerations.0.value",
            "ExistsTakesNoValue",
            id="exists-with-value",
        ),
        pytest.param(
            {"tolerations": [{"key": "k", "value": "a b"}]},
            "tolerations.0.value",
            "InvalidLabelValue",
            id="toleration-value",
        ),
        pytest.param(
            {"tolerations": [{"key": "k", "effect": "NoSchedule", "toleration_seconds": 5}]},
            "tolerations.0.toleration_seconds",
            "SecondsNeedNoExecute",
            id="seconds-without-no-execute",
        ),
        pytest.param(
            {"tolerations": [{"key": "k", "toleration_seconds": 5}]},
            "tolerations.0.toleration_seconds",
            "SecondsNeedNoExecute",
            id="seconds-without-effect",
        ),
        pytest.param(
            {"tolerations": [{"key": "k", "effect": "NoExecute", "toleration_seconds": -1}]},
            "tolerations.0.toleration_seconds",
            "greater_than_equal",
            id="negative-seconds",
        ),
        pytest.param(
            {"tolerations": [{"key": "k", "operator": "In"}]},
            "tolerations.0.operator",
            "literal_error",
            id="operator",
        ),
        pytest.param(
            {"tolerations": [{"key": "k", "effect": "NoRun"}]},
            "tolerations.0.effect",
            "literal_error",
            id="effect",
        ),
        pytest.param(
            {"tolerations": [{"key": "k", "typo": 1}]},
            "tolerations.0.typo",
            "extra_forbidden",
            id="toleration-extra",
        ),
    ],
)
def test_bad_kubernetes_fields_name_field_and_rule(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    err = refused(spec(**changes))
    assert (err.field, err.rule) == (field, rule)
    assert f"field {field!r}" in str(err)


def test_a_bad_image_is_refused_even_without_a_command() -> None:
    raw = spec(image="not an image")
    del raw["command"]
    assert (refused(raw).field, refused(raw).rule) == ("image", "InvalidImageReference")


def test_a_pipeline_file_carries_the_kubernetes_fields(tmp_path: Path) -> None:
    text = (
        GOOD
        + """\
    image: registry.local/thumbs:2
    handler_image: registry.local/ion-handler:2
    image_pull_policy: Always
    node_selector: {kubernetes.io/os: linux}
    tolerations:
      - {key: gpu, operator: Exists, effect: NoSchedule}
    service_account: thumbs
    secrets: [thumbs-env]
    image_pull_secrets: [registry-pull]
"""
    )
    thumbs = PipelineSpec.load(write(tmp_path, text)).modules[1]
    assert thumbs.handler_image == "registry.local/ion-handler:2"
    assert thumbs.image_pull_policy == "Always"
    assert thumbs.node_selector == {"kubernetes.io/os": "linux"}
    assert thumbs.tolerations == [Toleration(key="gpu", operator="Exists", effect="NoSchedule")]
    assert (thumbs.service_account, thumbs.secrets) == ("thumbs", ["thumbs-env"])
    assert thumbs.image_pull_secrets == ["registry-pull"]


def test_a_bad_kubernetes_field_in_a_pipeline_names_its_position(tmp_path: Path) -> None:
    text = GOOD + "    tolerations: [{key: gpu, operator: Exists, value: x}]\n"
    with pytest.raises(errors.ValidationError) as caught:
        PipelineSpec.load(write(tmp_path, text))
    assert (caught.value.field, caught.value.rule) == (
        "modules.1.tolerations.0.value",
        "ExistsTakesNoValue",
    )
