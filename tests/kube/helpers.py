"""Small helpers for tests that run Jobs and pods on the test cluster (synchronous client)."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from tests.kube.cluster import TEST_IMAGE


def container(name: str, script: str, *, image: str = TEST_IMAGE, **extra: Any) -> dict[str, Any]:
    """A container running `sh -c script` (the test image's entrypoint is `sh`)."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "args": ["-c", script],
        **extra,
    }


def job_manifest(
    name: str,
    containers: list[dict[str, Any]],
    *,
    init_containers: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    backoff_limit: int = 0,
    **pod_spec: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": containers, **pod_spec}
    if init_containers:
        spec["initContainers"] = init_containers
    if volumes:
        spec["volumes"] = volumes
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": spec}},
    }


def wait_job_finished(
    api: client.ApiClient, namespace: str, name: str, timeout: float = 90
) -> tuple[str, str]:
    """Poll until the Job has a Complete or Failed condition; returns (type, reason)."""
    batch = client.BatchV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = batch.read_namespaced_job_status(name, namespace)
        for cond in (job.status.conditions if job.status else None) or []:
            if cond.type in ("Complete", "Failed") and cond.status == "True":
                return cond.type, cond.reason or ""
        time.sleep(0.2)
    raise TimeoutError(f"Job {namespace}/{name} did not finish within {timeout} s")


def job_pods(api: client.ApiClient, namespace: str, name: str) -> list[client.V1Pod]:
    core = client.CoreV1Api(api)
    return list(core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items or [])


def pod_logs(api: client.ApiClient, namespace: str, pod: str, container: str) -> str:
    """A container's log through the API (`pods/log`, served by the kubelet)."""
    return str(client.CoreV1Api(api).read_namespaced_pod_log(pod, namespace, container=container))


def wait_pod_running(
    api: client.ApiClient, namespace: str, name: str, timeout: float = 60
) -> client.V1Pod:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        phase = pod.status.phase if pod.status else None
        if phase == "Running":
            return pod
        if phase in ("Succeeded", "Failed"):
            raise AssertionError(f"pod {name} ended as {phase}")
        time.sleep(0.2)
    raise TimeoutError(f"pod {namespace}/{name} not Running within {timeout} s")
