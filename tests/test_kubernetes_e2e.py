"""Ion on a real Kubernetes node with management outside the cluster, as a developer runs it.

`ion-management serve` (mutual TLS, provider `kubernetes`) runs on this machine with the admin
kubeconfig; `ion module create` registers modules with their images; management creates one
dispatcher Deployment per module with its own ServiceAccount and least-privilege Role; the
dispatcher pods create one Job per event; each job pod's handler talks to Azurite, the Cosmos
server and the Service Bus fake on the host. Faults: a dispatcher pod killed mid-job (its
replacement adopts the Job: no second Job), a failing module dead-lettered with its reason, and
the dispatcher's service account denied Secrets and other namespaces.

The example pipeline end to end, module deletion leaving nothing behind, and the 2018 default
provider run through the Helm chart's in-cluster management server instead:
tests/deploy/test_helm.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ion.dispatcher.executors.kubernetes import KubeApi, KubeApiError
from tests.e2e_support import Management, management_server
from tests.kube.ion import KubeIon, service_account_api
from tests.kube.pipeline import (
    Stack,
    create_backends_secret,
    example_pipeline,
    wait_flow,
)

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
async def api(kube_ion: KubeIon) -> AsyncIterator[KubeApi]:
    found = await KubeApi.connect(kubeconfig=str(kube_ion.cluster.kubeconfig))
    yield found
    await found.aclose()


@pytest.fixture
def management(stack: Stack, tmp_path: Path) -> Iterator[Management]:
    with management_server(tmp_path, stack.env) as found:
        yield found


def _create_modules(
    management: Management, kube_ion: KubeIon, *, only: set[str] | None = None
) -> list[str]:
    names = []
    for i, module in enumerate(example_pipeline().modules):
        if only is not None and module.name not in only:
            continue
        image = kube_ion.images.tag(f"example-{module.name}")
        args = [
            "module",
            "create",
            "-n",
            module.name,
            "-i",
            module.subscribes_to,
            "-o",
            ",".join(module.publishes),
            "-m",
            image,
            "--image-pull-policy",
            "Never",
        ]
        if i % 2:  # half of them name the provider; the rest rely on 2018's default
            args += ["-p", "kubernetes"]
        management.ion(*args)
        names.append(module.name)
    return names


async def _wait_running(management: Management, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        for name in sorted(pending):
            done = management.ion("module", "get", "-n", name, "-o", "json", check=False)
            if done.returncode == 0 and '"running"' in done.stdout.lower():
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            detail = management.ion("module", "get", "-n", sorted(pending)[0], "-o", "json").stdout
            raise AssertionError(f"dispatchers of {sorted(pending)} not running:\n{detail}")
        await asyncio.sleep(1)


async def test_the_dispatchers_service_account_may_not_read_secrets_or_other_namespaces(
    kube_ion: KubeIon,
    kube_namespace: str,
    stack: Stack,
    management: Management,
    api: KubeApi,
) -> None:
    kube_ion.ensure("dispatcher", "example-ingest")
    await create_backends_secret(api, kube_namespace, stack.backend_secrets)
    _create_modules(management, kube_ion, only={"ingest"})
    account = "ion-dispatcher-ingest"
    as_dispatcher = await service_account_api(api, kube_namespace, account)
    try:
        # what it needs
        await as_dispatcher.request("GET", f"/apis/batch/v1/namespaces/{kube_namespace}/jobs")
        await as_dispatcher.request("GET", f"/api/v1/namespaces/{kube_namespace}/pods")
        # nothing else
        for method, path in (
            ("GET", f"/api/v1/namespaces/{kube_namespace}/secrets"),
            ("GET", f"/api/v1/namespaces/{kube_namespace}/secrets/ion-backends"),
            ("GET", "/apis/batch/v1/namespaces/default/jobs"),
            ("GET", f"/apis/apps/v1/namespaces/{kube_namespace}/deployments"),
            ("DELETE", f"/api/v1/namespaces/{kube_namespace}/pods/x"),
        ):
            with pytest.raises(KubeApiError) as denied:
                await as_dispatcher.request(method, path)
            assert denied.value.status == 403, (method, path)
    finally:
        await as_dispatcher.aclose()
    management.ion("module", "delete", "-n", "ingest")


MODULE_SCRIPT = """#!/bin/sh
# A 2018-style module: reads nothing, writes a file, may sleep, may fail (from its env).
echo "module starting (sleep ${SLEEP:-0}, exit ${EXIT_CODE:-0})"
sleep "${SLEEP:-0}"
echo done > /ion/out/data/done.txt
exit "${EXIT_CODE:-0}"
"""


@pytest.fixture(scope="module")
def test_module_image(kube_ion: KubeIon, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny module image built on the base image with a real engine, imported into the node."""
    context = tmp_path_factory.mktemp("module-image")
    (context / "module.sh").write_text(MODULE_SCRIPT)
    (context / "module.sh").chmod(0o755)
    (context / "Dockerfile").write_text(
        f"FROM {kube_ion.images.base}\n"
        "COPY module.sh /usr/local/bin/module.sh\n"
        "USER 10001:10001\n"
        'ENTRYPOINT ["/usr/local/bin/module.sh"]\n'
    )
    tag = "localhost/ion-test-module:1"
    subprocess.run(
        ["docker", "build", "--network", "none", "-q", "-t", tag, str(context)],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    kube_ion.cluster.import_docker_image(tag)
    return tag


async def _raise(management: Management, event_type: str) -> str:
    raised = management.ion("event", "create", "--type", event_type)
    return raised.stderr.rsplit("ion trace flow -c ", 1)[1].split()[0]


async def test_a_dispatcher_pod_killed_mid_job_is_replaced_and_the_job_adopted_not_rerun(
    kube_ion: KubeIon,
    kube_namespace: str,
    stack: Stack,
    management: Management,
    api: KubeApi,
    test_module_image: str,
) -> None:
    kube_ion.ensure("dispatcher")
    await create_backends_secret(api, kube_namespace, stack.backend_secrets)
    management.ion(
        "module", "create", "-n", "slow", "-i", "slow.start", "-m", test_module_image,
        "--image-pull-policy", "Never", "--env", "SLEEP=15",
    )  # fmt: skip
    await _wait_running(management, ["slow"], timeout=240)
    correlation_id = await _raise(management, "slow.start")
    jobs_path = f"/apis/batch/v1/namespaces/{kube_namespace}/jobs"
    pods_path = f"/api/v1/namespaces/{kube_namespace}/pods"
    seen: set[str] = set()
    deadline = time.monotonic() + 180
    while True:  # until the module runs
        listing = await api.request("GET", jobs_path)
        seen |= {j["metadata"]["uid"] for j in listing.get("items") or []}
        pods = await api.request("GET", pods_path, params={"labelSelector": "ion/modulename=slow"})
        if any(
            (s.get("state") or {}).get("running")
            for p in pods.get("items") or []
            for s in (p.get("status") or {}).get("initContainerStatuses") or []
            if s.get("name") == "worker"
        ):
            break
        assert time.monotonic() < deadline, "the module never started"
        await asyncio.sleep(0.3)
    dispatchers = await api.request(
        "GET", pods_path, params={"labelSelector": "app.kubernetes.io/name=ion-dispatcher"}
    )
    killed = [p["metadata"]["name"] for p in dispatchers["items"]]
    assert len(killed) == 1
    await api.request("DELETE", f"{pods_path}/{killed[0]}", body={"gracePeriodSeconds": 0})
    settled = asyncio.create_task(wait_flow(stack.settings, correlation_id, timeout=300))
    while not settled.done():
        listing = await api.request("GET", jobs_path)
        seen |= {j["metadata"]["uid"] for j in listing.get("items") or []}
        await asyncio.sleep(0.3)
    flow = settled.result()
    assert flow.succeeded, flow.model_dump_json(indent=2)
    (run,) = list(flow.runs())
    assert [a.attempt for a in run.attempts] == [1]
    assert len(seen) == 1, f"the attempt ran as {len(seen)} Jobs"
    after = await api.request(
        "GET", pods_path, params={"labelSelector": "app.kubernetes.io/name=ion-dispatcher"}
    )
    assert killed[0] not in {p["metadata"]["name"] for p in after["items"]}
    management.ion("module", "delete", "-n", "slow")


async def test_a_failing_module_is_retried_with_backoff_then_dead_lettered_with_its_reason(
    kube_ion: KubeIon,
    kube_namespace: str,
    stack: Stack,
    management: Management,
    api: KubeApi,
    test_module_image: str,
) -> None:
    kube_ion.ensure("dispatcher")
    await create_backends_secret(api, kube_namespace, stack.backend_secrets)
    management.ion(
        "module", "create", "-n", "failing", "-i", "fail.start", "-m", test_module_image,
        "--image-pull-policy", "Never", "--env", "EXIT_CODE=3",
        "--retry-count", "1", "--retry-backoff", "2",
    )  # fmt: skip
    await _wait_running(management, ["failing"], timeout=240)
    correlation_id = await _raise(management, "fail.start")
    flow = await wait_flow(stack.settings, correlation_id, timeout=300)
    assert flow.settled and not flow.succeeded, flow.model_dump_json(indent=2)
    assert list(flow.runs()), flow.model_dump_json(indent=2)
    (run,) = list(flow.runs())
    assert [a.attempt for a in run.attempts] == [1, 2]
    assert run.attempts[-1].state == "DEAD_LETTERED", run.model_dump_json(indent=2)
    assert all("exited with code 3" in a.reason for a in run.attempts)
    assert all("module starting" in a.reason for a in run.attempts)  # its output, quoted
    first, second = run.attempts
    assert first.finished_at and second.started_at
    assert (second.started_at - first.finished_at).total_seconds() >= 2  # the backoff
    dlq = management.ion("event", "dlq", "list", "--module", "failing", "-o", "json")
    assert correlation_id in dlq.stdout
    management.ion("module", "delete", "-n", "failing")
