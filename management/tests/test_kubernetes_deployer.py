"""The Kubernetes deployer's objects and what it reports, without a cluster (the real-node
tests are in tests/test_kubernetes_e2e.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ion.core import ModuleRecord
from ion.core.config import IonSettings, load_settings
from ion.core.modules import ModuleSpec
from ion.management.deployers.kubernetes import _last_error, manifests, object_name


def _record(**spec: Any) -> ModuleRecord:
    fields: dict[str, Any] = {
        "name": "thumbnailer",
        "subscribes_to": "media.ingested",
        "publishes": ["media.thumbnailed"],
        "image": "localhost/thumbnailer:1",
        "instance_count": 3,
    }
    fields.update(spec)
    return ModuleRecord(id="thumbnailer", spec=ModuleSpec(**fields), created_at=datetime.now(UTC))


SETTINGS = IonSettings.model_validate(
    {
        "bus": {"url": "servicebus://ns"},
        "kubernetes": {"backends_secret": "ion-backends", "dispatcher_image": "d:1"},
    }
)


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def test_the_role_grants_what_a_dispatcher_needs_and_nothing_else() -> None:
    objects = _by_kind(manifests(_record(), SETTINGS, namespace="ion"))
    assert objects["Role"]["rules"] == [
        {
            "apiGroups": ["batch"],
            "resources": ["jobs"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        },
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
    ]
    binding = objects["RoleBinding"]
    assert binding["roleRef"]["name"] == object_name("thumbnailer")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ion-dispatcher-thumbnailer", "namespace": "ion"}
    ]


def test_the_deployment_runs_instance_count_dispatchers_with_probes_and_no_credentials() -> None:
    deployment = _by_kind(manifests(_record(), SETTINGS, namespace="ion"))["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ion-dispatcher-thumbnailer"
    (container,) = pod["containers"]
    assert container["image"] == "d:1"
    assert container["args"][:2] == ["serve", "--spec"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == 8080
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ION_DISPATCHER__EXECUTOR"] == "kubernetes"
    assert env["ION_KUBERNETES__NAMESPACE"] == "ion"
    assert env["ION_BUS__URL"] == "servicebus://ns"
    names = set(env) - {"ION_KUBERNETES__BACKENDS_SECRET"}  # a Secret's name, not its data
    assert not [k for k in names if "KEY" in k or "CONNECTION_STRING" in k or "SECRET" in k]
    assert container["envFrom"] == [{"secretRef": {"name": "ion-backends"}}]
    assert container["securityContext"]["runAsNonRoot"] is True


def test_the_spec_travels_in_the_configmap_and_a_new_etag_rolls_the_pods() -> None:
    first = _by_kind(manifests(_record(), SETTINGS, namespace="ion"))
    assert "subscribes_to: media.ingested" in first["ConfigMap"]["data"]["module.yaml"]
    changed = _record().model_copy(update={"etag": "v2"})
    second = _by_kind(manifests(changed, SETTINGS, namespace="ion"))
    annotations = second["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["ion/spec-etag"] == "v2"


def test_the_last_error_names_a_stuck_or_crashing_dispatcher() -> None:
    waiting = {
        "metadata": {"name": "p1"},
        "status": {
            "containerStatuses": [
                {"state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}
            ]
        },
    }
    assert _last_error({}, [waiting]) == "pod p1: ErrImagePull: not found"
    crashed = {
        "metadata": {"name": "p2"},
        "status": {
            "containerStatuses": [
                {
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                }
            ]
        },
    }
    assert "dispatcher exited with code 1" in _last_error({}, [crashed])
    creating = {
        "metadata": {"name": "p3"},
        "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
    }
    assert _last_error({}, [creating]) == ""
    stalled = {"conditions": [{"type": "Available", "status": "False", "message": "no replicas"}]}
    assert _last_error(stalled, []) == "Available: no replicas"


def test_a_shared_dispatcher_account_means_no_per_module_rbac_and_labels_reach_every_pod() -> None:
    shared = IonSettings.model_validate(
        {
            "kubernetes": {
                "dispatcher_service_account": "ion-dispatcher",
                "pod_labels": {"azure.workload.identity/use": "true"},
            }
        }
    )
    objects = manifests(_record(), shared, namespace="ion")
    assert [o["kind"] for o in objects] == ["ConfigMap", "Deployment"]
    template = _by_kind(objects)["Deployment"]["spec"]["template"]
    assert template["spec"]["serviceAccountName"] == "ion-dispatcher"
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert template["metadata"]["labels"]["ion/modulename"] == "thumbnailer"
    env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
    # the dispatcher's own Jobs get the labels too, and its settings read them back
    assert json.loads(env["ION_KUBERNETES__POD_LABELS"]) == {"azure.workload.identity/use": "true"}
    assert load_settings(environ=env).kubernetes.pod_labels == {
        "azure.workload.identity/use": "true"
    }


def test_dispatcher_pods_hold_the_executors_management_lets_routes_name() -> None:
    routed = IonSettings.model_validate({"dispatcher": {"routes_to": "azurebatch"}})
    deployment = _by_kind(manifests(_record(), routed, namespace="ion"))["Deployment"]
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert load_settings(environ=env).dispatcher.route_executors("kubernetes") == [
        "kubernetes",
        "azurebatch",
    ]
