"""Every manifest Ion sends, checked strictly and offline against the pinned Kubernetes schema."""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime
from typing import Any

import pytest

from ion.core import ModuleRecord
from ion.core.config import IonSettings
from ion.core.modules import ModuleSpec, Resources, Toleration
from ion.core.ports.executor import BackendRefs, JobRequest
from ion.dispatcher.executors.kubernetes import PodSettings, job_manifest
from ion.management.deployers.kubernetes import manifests
from tests.kube import schema


@pytest.fixture(scope="module", autouse=True)
def _schema_at_hand() -> None:
    if schema.spec_dir() is None:
        why = f"the OpenAPI schema of k8s.io/kubernetes@{schema.KUBERNETES_VERSION} (needs go)"
        if os.environ.get("ION_REQUIRE_KUBE") == "1":
            pytest.fail(f"ION_REQUIRE_KUBE=1 but {why} is missing", pytrace=False)
        pytest.skip(f"{why} is missing: run tools/k8s-testbins/build.sh")


def _spec(**fields: Any) -> ModuleSpec:
    base: dict[str, Any] = {
        "name": "classifier",
        "subscribes_to": "image.uploaded",
        "publishes": ["image.classified"],
        "image": "localhost/classifier:2",
    }
    return ModuleSpec(**{**base, **fields})


SPECS = {
    "plain": _spec(),
    "everything": _spec(
        command=["python", "main.py"],
        env={"MODEL": "resnet"},
        resources=Resources(cpu="2", memory="4Gi", gpu=2),
        handler_image="localhost/ion-handler:9",
        image_pull_policy="Always",
        node_selector={"kubernetes.io/arch": "amd64", "pool": "gpu"},
        tolerations=[
            Toleration(key="gpu", operator="Equal", value="yes", effect="NoSchedule"),
            Toleration(key="spot", operator="Exists", effect="NoExecute", toleration_seconds=30),
            Toleration(operator="Exists"),
        ],
        service_account="classifier-runner",
        secrets=["model-registry", "api-keys"],
        image_pull_secrets=["acr"],
        working_dir="/app",
        instance_count=3,
    ),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_job_manifests_are_valid(name: str) -> None:
    request = JobRequest(
        job_id="classifier-e1-a1",
        attempt=1,
        event=__import__("ion.core.events", fromlist=["x"]).new_root_event("image.uploaded"),
        spec=SPECS[name],
        backends=BackendRefs(
            bus_url="servicebus://x", blobs_url="azblob://a/c", meta_url="cosmos://a/d"
        ),
        labels={"ion/messageid": "m", "ion/deliverycount": "1"},
    )
    for pod in (
        PodSettings(handler_image="localhost/ion-handler:1", backends_secret="ion-backends"),
        PodSettings(
            handler_image="h:1",
            host_path_mounts=("/var/lib/ion",),
            handler_user=(0, 0),
            service_account="jobs",
        ),
    ):
        assert schema.validate(job_manifest(request, pod)) == []


@pytest.mark.parametrize("name", sorted(SPECS))
def test_deployer_manifests_are_valid(name: str) -> None:
    record = ModuleRecord(id=name, spec=SPECS[name], created_at=datetime.now(UTC))
    settings = IonSettings.model_validate(
        {"kubernetes": {"backends_secret": "ion-backends", "settings_env": {"ION_X": "1"}}}
    )
    objects = manifests(record, settings, namespace="ion")
    assert [o["kind"] for o in objects] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
    ]
    for obj in objects:
        assert schema.validate(obj) == [], obj["kind"]


def test_the_validator_catches_unknown_fields_wrong_types_and_missing_fields() -> None:
    record = ModuleRecord(id="m", spec=SPECS["plain"], created_at=datetime.now(UTC))
    deployment = manifests(record, IonSettings(), namespace="ion")[-1]
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPortt"] = 1
    assert any("containerPortt" in p for p in schema.validate(typo))
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["replicas"] = "3"
    assert any("replicas" in p for p in schema.validate(wrong))
    nameless = copy.deepcopy(deployment)
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]
    assert any("missing required field 'name'" in p for p in schema.validate(nameless))
