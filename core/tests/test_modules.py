"""ModuleSpec and PipelineSpec: every broken rule is refused with the field that broke it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ion.core import errors
from ion.core.modules import ModuleSpec, PipelineSpec


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
