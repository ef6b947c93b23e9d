"""Ion's images on the test cluster: built once by `ion_images`, imported into its containerd.

`kube_ion` (session) gives the cluster and Ion's images; `ensure(*names)` imports the ones a
test needs into the node's image store (once per session), so pods run them with
`imagePullPolicy: Never`. The handler image is imported up front.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from ion.dispatcher.executors.kubernetes import KubeApi
from tests.containers.fixtures import IonImages
from tests.kube.cluster import LocalCluster


@dataclass(frozen=True)
class KubeIon:
    """A cluster that holds Ion's images."""

    cluster: LocalCluster
    images: IonImages
    imported: dict[str, float] = field(default_factory=dict)
    """Seconds each imported image took."""

    def ensure(self, *names: str) -> None:
        """Import these images (`handler`, `dispatcher`, `example-ingest`...) unless done.

        They go in one `docker save` stream, so the layers they share are sent once.
        """
        wanted = [n for n in dict.fromkeys(names) if n not in self.imported]
        if not wanted:
            return
        started = time.monotonic()
        self.cluster.import_docker_image(*(self.images.tag(n) for n in wanted))
        took = time.monotonic() - started
        for name in wanted:
            self.imported[name] = took / len(wanted)

    @property
    def handler_image(self) -> str:
        """The handler image's reference on the node."""
        return self.images.tag("handler")

    @property
    def dispatcher_image(self) -> str:
        """The dispatcher image's reference on the node."""
        return self.images.tag("dispatcher")


@pytest.fixture(scope="session")
def kube_ion(kube_cluster: LocalCluster, ion_images: IonImages) -> KubeIon:
    """The session's cluster with Ion's images at hand (the handler's imported)."""
    found = KubeIon(cluster=kube_cluster, images=ion_images)
    found.ensure("handler")
    return found


async def service_account_api(admin: KubeApi, namespace: str, account: str) -> KubeApi:
    """A client of the API server that acts as `account` (a fresh TokenRequest token)."""
    from kubernetes.aio import client

    token = await admin.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    config = client.Configuration()
    config.host = admin._host
    config.ssl_ca_cert = admin._config.ssl_ca_cert
    config.api_key = {"authorization": token["status"]["token"]}
    config.api_key_prefix = {"authorization": "Bearer"}
    return KubeApi(config)
