"""Ion's images on the test cluster: built once by `ion_images`, imported into its containerd.

`kube_ion` (session) gives the cluster and Ion's images; `ensure(*names)` imports the ones a
test needs into the node's image store (once per session), so pods run them with
`imagePullPolicy: Never`. The handler image is imported up front.
"""

from __future__ import annotations

import subprocess
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
        """Import these images (`handler`, `dispatcher`, `example-ingest`...) unless done.

        They go in one `docker save` stream, so the layers they share are sent once.
        """
        wanted = [n for n in dict.fromkeys(names) if n not in self.imported]
        if not wanted:
            return
        started = time.monotonic()
        save = subprocess.Popen(
            ["docker", "save", *(self.images.tag(n) for n in wanted)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert save.stdout is not None
        try:
            self.cluster.import_image_tar(save.stdout)
        finally:
            save.stdout.close()
            err = save.stderr.read().decode() if save.stderr else ""
            code = save.wait(timeout=120)
        if code != 0:
            raise AssertionError(f"docker save {' '.join(wanted)} failed ({code}): {err}")
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
