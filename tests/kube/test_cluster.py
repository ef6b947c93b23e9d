"""The Kubernetes test harness itself, on a real cluster: Jobs run real containers, pods reach
the apiserver (in-cluster config) and host services, and teardown leaves nothing on the host."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.kube.cluster import TEST_IMAGE, LocalCluster
from tests.kube.fixtures import require_kube
from tests.kube.helpers import (
    container,
    job_manifest,
    job_pods,
    pod_logs,
    wait_job_finished,
    wait_pod_running,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def api(kube_cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api_client = kube_cluster.api_client()
    yield api_client
    api_client.close()


def test_a_job_with_an_init_container_and_an_empty_dir_completes_and_its_logs_are_read(
    api: client.ApiClient, kube_namespace: str
) -> None:
    shared = [{"name": "shared", "mountPath": "/shared"}]
    job = job_manifest(
        "init-and-main",
        init_containers=[
            container(
                "init",
                'echo "written by init in $(hostname)" > /shared/msg; echo init wrote',
                volumeMounts=shared,
            )
        ],
        containers=[
            container(
                "main",
                'echo "main read: $(cat /shared/msg)"; echo "TASK_ID=$TASK_ID"',
                volumeMounts=shared,
                env=[{"name": "TASK_ID", "value": "t-42"}],
            )
        ],
        volumes=[{"name": "shared", "emptyDir": {}}],
    )
    started = time.monotonic()
    client.BatchV1Api(api).create_namespaced_job(kube_namespace, job)
    assert wait_job_finished(api, kube_namespace, "init-and-main") == (
        "Complete",
        "CompletionsReached",
    )
    print(f"Job init+main Complete in {time.monotonic() - started:.2f} s")

    [pod] = job_pods(api, kube_namespace, "init-and-main")
    assert pod.status.phase == "Succeeded"
    assert pod.spec.containers[0].image == TEST_IMAGE
    assert pod_logs(api, kube_namespace, pod.metadata.name, "init") == "init wrote\n"
    assert pod_logs(api, kube_namespace, pod.metadata.name, "main") == (
        f"main read: written by init in {pod.metadata.name}\nTASK_ID=t-42\n"
    )


def test_a_job_exiting_1_with_backoff_limit_0_fails(
    api: client.ApiClient, kube_namespace: str
) -> None:
    job = job_manifest("exit-one", [container("main", "echo about to fail >&2; exit 1")])
    started = time.monotonic()
    client.BatchV1Api(api).create_namespaced_job(kube_namespace, job)
    assert wait_job_finished(api, kube_namespace, "exit-one") == ("Failed", "BackoffLimitExceeded")
    print(f"exit-1 Job Failed in {time.monotonic() - started:.2f} s")

    [pod] = job_pods(api, kube_namespace, "exit-one")
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (1, "Error")
    assert pod_logs(api, kube_namespace, pod.metadata.name, "main") == "about to fail\n"


def test_a_pod_reaches_the_apiserver_the_in_cluster_way(
    kube_cluster: LocalCluster, api: client.ApiClient, kube_namespace: str
) -> None:
    """KUBERNETES_SERVICE_HOST:PORT (10.0.0.1:443) + the projected SA token, as client libraries'
    in-cluster config uses them. busybox's wget speaks TLS but cannot verify certificates, so
    the pod side proves routing and token authentication (a SelfSubjectReview names the pod's
    ServiceAccount), and the host side proves the serving cert verifies, with the CA mounted in
    the pod, for the name 10.0.0.1 that in-cluster clients check."""
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = f"""
echo "host=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"
wget -q -O - --no-check-certificate \
  --header "Authorization: Bearer $(cat {sa_dir}/token)" \
  --header "Content-Type: application/json" \
  --post-data '{{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}}' \
  "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/apis/authentication.k8s.io/v1/selfsubjectreviews"
echo
echo "---ca---"
cat {sa_dir}/ca.crt
"""
    client.BatchV1Api(api).create_namespaced_job(
        kube_namespace, job_manifest("in-cluster", [container("main", script)])
    )
    assert wait_job_finished(api, kube_namespace, "in-cluster") == (
        "Complete",
        "CompletionsReached",
    )
    [pod] = job_pods(api, kube_namespace, "in-cluster")
    out = pod_logs(api, kube_namespace, pod.metadata.name, "main")
    assert out.startswith("host=10.0.0.1:443\n"), out
    review, mounted_ca = out.removeprefix("host=10.0.0.1:443\n").split("---ca---\n", 1)
    user = json.loads(review)["status"]["userInfo"]["username"]
    assert user == f"system:serviceaccount:{kube_namespace}:default"
    assert mounted_ca.strip() == kube_cluster.ca_cert.read_text().strip()

    # What the DNAT rule forwards to, checked as an in-cluster client would: cert for 10.0.0.1.
    port = int(kube_cluster.api_url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(kube_cluster.ca_cert))
    with (
        socket.create_connection((kube_cluster.host_ip, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="10.0.0.1") as tls,
    ):
        assert tls.version() is not None


def test_a_pod_reaches_a_service_on_the_host_at_host_ip(
    kube_cluster: LocalCluster, api: client.ApiClient, kube_namespace: str
) -> None:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b"hello pod\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://{kube_cluster.host_ip}:{server.server_address[1]}/from-pod"
        client.BatchV1Api(api).create_namespaced_job(
            kube_namespace, job_manifest("to-host", [container("main", f"wget -q -O - {url}")])
        )
        assert wait_job_finished(api, kube_namespace, "to-host") == (
            "Complete",
            "CompletionsReached",
        )
    finally:
        server.shutdown()
        server.server_close()
    [pod] = job_pods(api, kube_namespace, "to-host")
    assert pod_logs(api, kube_namespace, pod.metadata.name, "main") == "hello pod\n"
    assert seen == ["/from-pod"]


def test_teardown_leaves_no_mounts_netns_bridge_shims_cgroups_or_rules() -> None:
    """A second cluster of its own (alongside the session one, if running): a pod with an
    emptyDir and a projected token runs, so every kind of host state exists; after stop()
    none of it is left."""
    require_kube()
    cluster = LocalCluster()
    try:
        cluster.start()
        print(f"second cluster ready in {cluster.timings['ready']:.2f} s: {cluster.timings}")
        api_client = cluster.api_client()
        try:
            ns = cluster.new_namespace("teardown")
            client.CoreV1Api(api_client).create_namespaced_pod(
                ns,
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "sleeper"},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            container(
                                "main",
                                "trap 'exit 0' TERM; while true; do sleep 0.2; done",
                                volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
                            )
                        ],
                        "volumes": [{"name": "scratch", "emptyDir": {}}],
                    },
                },
            )
            wait_pod_running(api_client, ns, "sleeper")
        finally:
            api_client.close()
        netns = cluster.pod_netns()
        before = cluster.leftovers()
        pids = cluster.pids()
    except BaseException:
        cluster.stop()
        raise
    # Everything to be cleaned up is really there first, so the assertion below means something.
    assert netns and all(Path(p).exists() for p in netns)
    for kind in ("processes", "shims", "mounts", "netns", "bridge", "cgroups", "iptables"):
        assert before[kind], f"expected some {kind} while the cluster runs: {before}"
    assert set(pids) == {
        "containerd",
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
    }

    started = time.monotonic()
    cluster.stop()
    print(f"teardown in {time.monotonic() - started:.2f} s: {cluster.teardown_timings}")

    after = cluster.leftovers()
    assert after == {kind: [] for kind in after}, after
    assert not any(Path(p).exists() for p in netns)
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists(), pid
    assert not (cluster.work_dir / "containerd").exists()
    assert (cluster.work_dir / "logs/kubelet.log").exists()
