"""Pytest fixtures for a real one-node Kubernetes cluster (see tests/kube/cluster.py).

`kube_cluster` (session) starts the cluster the first time a test asks for it, ~5-15 s, and
tears it down at the end of the session; `kube_namespace` gives each test a fresh namespace,
deleted afterwards. Without the prerequisites (root, containerd, runc, CNI plugins, busybox-static,
the pause binary, the Kubernetes binaries or go to build them) the tests skip and say what to
run, unless ION_REQUIRE_KUBE=1 (CI), where that is a failure. When a test using the cluster
fails, the tails of the component logs are added to its report.

The root conftest.py re-exports these, like the Azure emulator fixtures.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator

import pytest

from tests.kube.cluster import ClusterError, LocalCluster, find_binaries, missing_prerequisites

_session_cluster: LocalCluster | None = None


def require_kube() -> None:
    """Skip (or fail, when ION_REQUIRE_KUBE=1) if a cluster can't be started here."""
    reason = missing_prerequisites()
    if reason is None:
        return
    if os.environ.get("ION_REQUIRE_KUBE") == "1":
        pytest.fail(f"ION_REQUIRE_KUBE=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _stop_timeout(request: pytest.FixtureRequest) -> None:
    """Lift pytest-timeout's limit off the test that pays for a first build (4-7 min)."""
    item = getattr(request, "_pyfuncitem", None)
    cancel = getattr(item, "cancel_timeout", None)
    if callable(cancel):
        cancel()


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A running one-node cluster (real kubelet, containerd, runc) shared by the session.

    Attributes: kubeconfig, api_url, node_name, host_ip, containerd_socket, test_image;
    helpers: new_namespace, import_image_tar, import_docker_image, logs, log_tails.
    """
    global _session_cluster
    require_kube()
    if find_binaries() is None:
        _stop_timeout(request)
        print("kube_cluster: building the Kubernetes binaries (once, 4-7 min)", file=sys.stderr)
    cluster = LocalCluster(build=True)  # work dir /tmp/ion-kube-s<slot>-*: sockets need short paths
    try:
        cluster.start()
    except ClusterError as exc:
        if os.environ.get("ION_REQUIRE_KUBE") == "1":
            raise
        pytest.fail(f"the Kubernetes test cluster did not start: {exc}", pytrace=False)
    _session_cluster = cluster
    print(
        f"kube_cluster: slot {cluster.slot} ready in {cluster.timings['ready']:.1f} s "
        f"({cluster.work_dir})",
        file=sys.stderr,
    )
    try:
        yield cluster
    finally:
        _session_cluster = None
        cluster.stop()
        left = {k: v for k, v in cluster.leftovers().items() if v}
        assert not left, f"the Kubernetes test cluster left this behind: {left}"


@pytest.fixture
def kube_namespace(kube_cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace in the session cluster, deleted after the test."""
    name = kube_cluster.new_namespace(request.node.name.split("[")[0].removeprefix("test_")[:30])
    yield name
    kube_cluster.delete_namespace(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the component logs' tails to the report of a failed test that used the cluster."""
    report = yield
    cluster = _session_cluster
    if (
        report.failed
        and cluster is not None
        and "kube_cluster" in getattr(item, "fixturenames", ())
    ):
        report.sections.append(("Kubernetes component logs (last lines)", cluster.log_tails(40)))
    return report
