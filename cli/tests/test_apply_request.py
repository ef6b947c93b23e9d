"""`ion apply` sends a pipeline file's module as a create request the server turns back into
the very same spec, every field included, so a second apply is `unchanged`."""

from __future__ import annotations

from pathlib import Path

from ion.cli.commands.apply import module_request
from ion.core.modules import ModuleSpec
from ion.management.convert import spec_from_request


def test_every_field_survives_the_request(tmp_path: Path) -> None:
    spec = ModuleSpec.parse(
        {
            "name": "classify",
            "subscribes_to": "media.ingested",
            "publishes": ["digits.classified", "digits.failed"],
            "image": "registry.example.com/classify:1",
            "command": ["python", "classify.py", "--fast"],
            "env": {"A": "1"},
            "secretEnv": {"TOKEN": "s3cret"},
            "retry_count": 0,
            "retry_backoff_seconds": 0.25,
            "max_execution_seconds": 42.5,
            "resources": {"cpu": "500m", "memory": "1Gi", "gpu": 1},
            "instance_count": 3,
            "max_in_flight": 7,
            "working_dir": "work",
            "handler_image": "registry.example.com/handler:2",
            "image_pull_policy": "IfNotPresent",
            "node_selector": {"pool": "gpu"},
            "tolerations": [
                {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
                {
                    "key": "dedicated",
                    "value": "ion",
                    "effect": "NoExecute",
                    "toleration_seconds": 30,
                },
            ],
            "service_account": "ion-jobs",
            "secrets": ["classify-credentials"],
            "image_pull_secrets": ["pull"],
            "when": 'data.kind == "digit"',
            "routes": [
                {"when": "files.size > 1GiB", "executor": "kubernetes", "resources": {"gpu": 2}},
                {"executor": "local", "resources": {"cpu": "1"}},
            ],
        }
    )
    back = spec_from_request(module_request(spec, tmp_path))
    assert back == spec.model_copy(update={"working_dir": str((tmp_path / "work").resolve())})


def test_a_local_command_runs_in_the_files_directory(tmp_path: Path) -> None:
    spec = ModuleSpec.parse({"name": "a", "subscribes_to": "x.y", "command": ["python", "a.py"]})
    assert module_request(spec, tmp_path).working_dir == str(tmp_path.resolve())
    image = ModuleSpec.parse({"name": "a", "subscribes_to": "x.y", "image": "alpine:3"})
    assert module_request(image, tmp_path).working_dir == ""
