"""The example pipeline on a real Kubernetes node, as a user runs it.

`ion-management serve` (mutual TLS, provider `kubernetes`) runs in this process's machine with
the admin kubeconfig; `ion module create` registers the example modules with their images
(one of them with 2018's defaults: no provider named); management creates one dispatcher
Deployment per module; the dispatcher pods (in-cluster credentials, their own least-privilege
Role) create one Job per event; each job pod's handler talks to Azurite, the Cosmos server and
the Service Bus fake on the host. The flow tree must complete with every output in the blob
store, and deleting the modules must leave nothing behind in the namespace. Faults follow:
a dispatcher pod killed mid-job (its replacement adopts the Job: no second Job), and the
dispatcher's service account being denied Secrets and other namespaces.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ion.core.config import IonSettings, load_settings
from ion.core.flow import Flow
from ion.core.modules import PipelineSpec
from ion.dispatcher.executors.kubernetes import KubeApi, KubeApiError
from ion.management.control import ControlPlane
from ion.management.testing import make_test_certificates
from tests.fakes import azure_emulators
from tests.fakes.fixtures import require_emulators
from tests.fakes.servicebus import FakeServiceBus
from tests.kube.ion import KubeIon, service_account_api

pytestmark = pytest.mark.timeout(900)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "media-classifiers"
BIN = Path(sys.executable).parent


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


@pytest.fixture
async def api(kube_ion: KubeIon) -> AsyncIterator[KubeApi]:
    found = await KubeApi.connect(kubeconfig=str(kube_ion.cluster.kubeconfig))
    yield found
    await found.aclose()


@dataclass
class Management:
    process: subprocess.Popen[bytes]
    cli_env: dict[str, str]
    log: Path

    def ion(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / "ion"), *args],
            env=self.cli_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"ion {' '.join(args)} exited {done.returncode}:\n{done.stderr}\n"
                f"management log:\n{self.log.read_text()[-4000:]}"
            )
        return done


@pytest.fixture
def management(stack: Stack, tmp_path: Path) -> Iterator[Management]:
    certs = make_test_certificates(tmp_path / "certs")
    pki = certs.pki

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        front = s.getsockname()[1]
    log = tmp_path / "management.log"
    process = subprocess.Popen(
        [
            str(BIN / "ion-management"),
            "serve",
            "--port",
            str(port),
            "--front-api-port",
            str(front),
            "--certfile",
            str(pki.server.certfile),
            "--keyfile",
            str(pki.server.keyfile),
            "--cacertfile",
            str(pki.ca_cert),
        ],
        env={**os.environ, **stack.env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    cli_env = {
        **os.environ,
        "ION_HOME": str(tmp_path / "cli-home"),
        "ION_ENDPOINT": f"127.0.0.1:{port}",
        "ION_CERTFILE": str(pki.client.certfile),
        "ION_KEYFILE": str(pki.client.keyfile),
        "ION_CACERTFILE": str(pki.ca_cert),
    }
    found = Management(process=process, cli_env=cli_env, log=log)
    deadline = time.monotonic() + 60
    while found.ion("module", "list", check=False).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"management did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    yield found
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


async def _create_secret(api: KubeApi, namespace: str, data: dict[str, str]) -> None:
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


def _create_modules(
    management: Management, kube_ion: KubeIon, *, only: set[str] | None = None
) -> list[str]:
    names = []
    for i, module in enumerate(_pipeline().modules):
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


def _pipeline() -> PipelineSpec:
    return PipelineSpec.load(EXAMPLE / "pipeline.yaml")


async def _objects(api: KubeApi, namespace: str) -> dict[str, list[str]]:
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


async def _wait_flow(settings: IonSettings, correlation_id: str, timeout: float) -> Flow:
    """The flow once it has runs and none is pending (a root event no dispatcher has picked up
    yet has no runs, and so counts as settled)."""
    deadline = time.monotonic() + timeout
    async with ControlPlane(settings) as platform:
        while True:
            left = deadline - time.monotonic()
            flow = await platform.wait_settled(correlation_id, timeout=max(left, 1))
            if list(flow.runs()) or time.monotonic() > deadline:
                return flow
            await asyncio.sleep(0.5)


async def test_the_example_pipeline_runs_on_kubernetes_and_delete_leaves_nothing(
    kube_ion: KubeIon,
    kube_namespace: str,
    stack: Stack,
    management: Management,
    api: KubeApi,
) -> None:
    kube_ion.ensure("dispatcher", *(f"example-{m.name}" for m in _pipeline().modules))
    await _create_secret(api, kube_namespace, stack.backend_secrets)
    names = _create_modules(management, kube_ion)
    objects = await _objects(api, kube_namespace)
    assert sorted(objects["deployments"]) == sorted(f"ion-dispatcher-{n}" for n in names)
    await _wait_running(management, names, timeout=240)

    raised = management.ion(
        "event", "create", "--type", "media.submitted", "--data", "count=6", "--data", "seed=7"
    )
    correlation_id = raised.stderr.rsplit("ion trace flow -c ", 1)[1].split()[0]
    flow = await _wait_flow(stack.settings, correlation_id, timeout=420)
    assert flow.succeeded, flow.model_dump_json(indent=2)
    runs = {r.module: r for r in flow.runs()}
    assert set(runs) == set(names)
    async with ControlPlane(stack.settings) as platform:
        for run in runs.values():
            assert run.outputs, run.module
            for key in run.outputs:
                assert (await platform.blobs.stat(key)).size > 0
    # every attempt ran as one Job, labelled the 2018 way
    jobs = await api.request("GET", f"/apis/batch/v1/namespaces/{kube_namespace}/jobs")
    for job in jobs.get("items") or []:
        labels = job["metadata"]["labels"]
        assert labels["ion/modulename"] in names and "ion/eventid" in labels

    for name in names:
        management.ion("module", "delete", "-n", name)
    deadline = time.monotonic() + 120
    while True:
        left = {k: v for k, v in (await _objects(api, kube_namespace)).items() if v}
        if not left:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind after delete: {left}")
        await asyncio.sleep(1)


async def test_the_dispatchers_service_account_may_not_read_secrets_or_other_namespaces(
    kube_ion: KubeIon,
    kube_namespace: str,
    stack: Stack,
    management: Management,
    api: KubeApi,
) -> None:
    kube_ion.ensure("dispatcher", "example-ingest")
    await _create_secret(api, kube_namespace, stack.backend_secrets)
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
    await _create_secret(api, kube_namespace, stack.backend_secrets)
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
    settled = asyncio.create_task(_wait_flow(stack.settings, correlation_id, timeout=300))
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
    await _create_secret(api, kube_namespace, stack.backend_secrets)
    management.ion(
        "module", "create", "-n", "failing", "-i", "fail.start", "-m", test_module_image,
        "--image-pull-policy", "Never", "--env", "EXIT_CODE=3",
        "--retry-count", "1", "--retry-backoff", "2",
    )  # fmt: skip
    await _wait_running(management, ["failing"], timeout=240)
    correlation_id = await _raise(management, "fail.start")
    flow = await _wait_flow(stack.settings, correlation_id, timeout=300)
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
