"""Ion's images on the test cluster: built once by `ion_images`, imported into its containerd.

`kube_ion` (session) gives the cluster and Ion's images; `ensure(*names)` imports the ones a
test needs into the node's image store (once per session), so pods run them with
`imagePullPolicy: Never`. The handler image is imported up front.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

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
        """Import these images (`handler`, `dispatcher`, `example-ingest`...) unless done."""
        for name in names:
            if name not in self.imported:
                started = time.monotonic()
                self.cluster.import_docker_image(self.images.tag(name))
                self.imported[name] = time.monotonic() - started

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
