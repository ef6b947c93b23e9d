"""The example pipeline's backends for tests on the real cluster: Azurite, the Cosmos server and
the Service Bus fake on the bridge's host address (pods reach them there), their credentials as
the Secret job pods get, and helpers to read what Ion left in a namespace and wait for a flow.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ion.core.config import IonSettings, load_settings
from ion.core.flow import Flow, load_flow
from ion.core.modules import PipelineSpec
from ion.dispatcher.executors.kubernetes import KubeApi
from ion.management.control import ControlPlane
from tests.fakes import azure_emulators
from tests.fakes.fixtures import require_emulators
from tests.fakes.servicebus import FakeServiceBus
from tests.kube.ion import KubeIon

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "media-classifiers"


@dataclass
class Stack:
    """Emulators the pods reach on the bridge, and management's settings for them."""

    env: dict[str, str]
    backend_secrets: dict[str, str]
    settings: IonSettings


def _sb_endpoint(connection_string: str) -> str:
    fields = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    return fields["Endpoint"].removeprefix("sb://").rstrip("/")


@pytest.fixture
def stack(kube_ion: KubeIon, tmp_path: Path, kube_namespace: str) -> Iterator[Stack]:
    require_emulators()
    host = kube_ion.cluster.host_ip
    with (
        azure_emulators.running_azurite(tmp_path / "azurite", host=host) as azurite,
        azure_emulators.running_cosmos(tmp_path / "cosmos", host=host) as cosmos,
        FakeServiceBus(host=host) as servicebus,
    ):
        # TLS is verified everywhere: the emulators' CAs travel in the Secret as a file
        bundle = (
            Path(cosmos.ca_cert).read_text()
            + Path(servicebus.admin_client_kwargs["connection_verify"]).read_text()
        )
        (tmp_path / "ca.crt").write_text(bundle)
        secrets = {
            "ION_AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "ION_AZURE_COSMOS_ENDPOINT": cosmos.endpoint,
            "ION_AZURE_COSMOS_KEY": cosmos.key,
            "ION_AZURE_SERVICEBUS_CONNECTION_STRING": servicebus.connection_string,
            "ION_AZURE_SERVICEBUS_ADMIN_CONNECTION_STRING": servicebus.admin_connection_string,
            "ION_AZURE_CA_FILE": "/etc/ion/backends/ca.crt",
            "ca.crt": bundle,
        }
        tag = kube_namespace.replace("-", "")[-12:]
        env = {
            "ION_HOME": str(tmp_path / "home"),
            "ION_BLOBS__URL": f"azblob://devstoreaccount1/ion-{tag}",
            "ION_META__URL": f"cosmos://localhost/ion-{tag}",
            "ION_BUS__URL": f"servicebus://{_sb_endpoint(servicebus.connection_string)}",
            "ION_BUS__LOCK_DURATION_SECONDS": "10",
            "ION_BUS__RECEIVE_WAIT_SECONDS": "0.3",
            "ION_MANAGEMENT__PROVIDERS": "kubernetes",
            "ION_KUBERNETES__KUBECONFIG": str(kube_ion.cluster.kubeconfig),
            "ION_KUBERNETES__NAMESPACE": kube_namespace,
            "ION_KUBERNETES__HANDLER_IMAGE": kube_ion.handler_image,
            "ION_KUBERNETES__DISPATCHER_IMAGE": kube_ion.dispatcher_image,
            "ION_KUBERNETES__IMAGE_PULL_POLICY": "Never",
            "ION_KUBERNETES__BACKENDS_SECRET": "ion-backends",
            "ION_KUBERNETES__PENDING_TIMEOUT_SECONDS": "60",
        }
        local = {
            **{k: v for k, v in secrets.items() if k.startswith("ION_")},
            "ION_AZURE_CA_FILE": str(tmp_path / "ca.crt"),
        }
        env.update(local)
        old = {k: os.environ.get(k) for k in local}
        os.environ.update(local)  # the control plane in this process reads them too
        try:
            yield Stack(env=env, backend_secrets=secrets, settings=load_settings(environ=env))
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            assert not servicebus.errors, servicebus.errors


async def create_backends_secret(api: KubeApi, namespace: str, data: dict[str, str]) -> None:
    await api.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        body={
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ion-backends"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        },
    )


def example_pipeline() -> PipelineSpec:
    return PipelineSpec.load(EXAMPLE / "pipeline.yaml")


async def ion_objects(api: KubeApi, namespace: str) -> dict[str, list[str]]:
    paths = {
        "deployments": f"/apis/apps/v1/namespaces/{namespace}/deployments",
        "jobs": f"/apis/batch/v1/namespaces/{namespace}/jobs",
        "pods": f"/api/v1/namespaces/{namespace}/pods",
        "configmaps": f"/api/v1/namespaces/{namespace}/configmaps",
        "roles": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        "rolebindings": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        "serviceaccounts": f"/api/v1/namespaces/{namespace}/serviceaccounts",
    }
    found: dict[str, list[str]] = {}
    for kind, path in paths.items():
        listing = await api.request("GET", path)
        names = [item["metadata"]["name"] for item in listing.get("items") or []]
        found[kind] = [n for n in names if n not in ("default", "kube-root-ca.crt")]
    return found


async def wait_flow(settings: IonSettings, correlation_id: str, timeout: float) -> Flow:
    """The flow once it has runs and none is pending.

    The modules run in the cluster's management, not in this process's control plane, so
    the subscribers that make a not-yet-started run PENDING come from the store's live modules
    (with the local pool's, which is empty, a flow looked settled while a Job of a fan-out
    sibling was still being scheduled). A root event no dispatcher has picked up yet has no
    runs, and so counts as settled: wait for runs too."""
    deadline = time.monotonic() + timeout
    async with ControlPlane(settings) as platform:
        while True:
            subscribers: dict[str, list[str]] = {}
            for record in await platform.meta.list_modules():
                subscribers.setdefault(record.spec.subscribes_to, []).append(record.spec.name)
            flow = await load_flow(platform.meta, correlation_id, subscribers)
            if (flow.settled and list(flow.runs())) or time.monotonic() > deadline:
                return flow
            await asyncio.sleep(0.5)
