"""The Kubernetes executor on a real one-node cluster: Job creates/s and seconds per hop, vs bare Jobs.

Starts its own cluster (`tests.kube.cluster.LocalCluster`: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kubelet, containerd, runc; a free slot, so it runs beside
clusters of other sessions) and imports the handler image (`localhost/ion-handler:dev`, or
$ION_HANDLER_IMAGE) from the Docker engine into the node's containerd; stops the cluster at the
end. Exits 2 (skipped) without the cluster's prerequisites (root, containerd, the Kubernetes
binaries: `tools/k8s-node/prepare.sh && tools/k8s-testbins/build.sh`) or without a Docker engine
holding the handler image (`make images`; the image is built with tools/docker/images.py
--only handler when the engine answers but lacks it).

1. `kube.creates` — Jobs created per second. Ion: `KubernetesExecutor.submit` of N requests at
   once (its API client allows 32 calls at a time, the default `create_concurrency`). Baseline:
   the same manifests (`job_manifest(request, pod)`, built before the clock starts) POSTed with
   the `kubernetes` package's sync client, `BatchV1Api.create_namespaced_job` in a thread pool of
   32 with a urllib3 pool of 32 connections, `field_validation="Strict"` as the executor sends,
   and `_preload_content=False` (the reply is read but not turned into models: the executor
   does not build models either, so neither side pays for that). Each side has a namespace of
   its own (so the executor's watch never sees the baseline's Jobs) with a ResourceQuota of
   `count/pods: 0`: the Jobs exist but no pod is ever created. Jobs are deleted
   (deletecollection) between rounds; one untimed warm-up round per side, then the sides
   alternate (baseline first in even rounds, Ion first in odd ones). The CPU each cluster
   process and the bench itself spent per Job is printed as a note for each side.
2. `kube.per_hop` — a chain of K no-op modules hop-0 .. hop-K-1 (hop-i subscribes to `hop.i`
   and publishes `hop.i+1`; its worker is `sh -c` on the cluster's busybox test image writing
   one event file), run by a `DispatcherPool` (`ion.dispatcher.embedded.dispatcher_options`)
   over `KubernetesExecutor.from_settings` with the embedded SQLite bus and metadata store and
   the file blob store in a scratch directory that the pods mount at the same path
   (`host_path_mounts`). A root `hop.0` event runs the chain; per hop = (last hop's message
   settled - just before the root event was raised) / K. Baseline: K bare Jobs of the same shape
   (the executor's own manifest for that module, so the same two init containers, container,
   volumes, security context and resources, but `prepare` and `commit` run `ion-handler --help`
   in the same handler image instead of the real steps; the worker runs the same script)
   created one after another with the sync client, each watched with `kubernetes.watch` until
   its Job is Complete; per hop = mean of (Complete - create called). Also reported against the
   pod's Succeeded phase (the stricter end: Ion acts on the pod, the Job condition comes later).
   One untimed warm-up per side, then the sides alternate (first side swapped every round).
3. `kube.event_to_job_created` / `kube.job_finished_to_settled` — median and p90 over every hop
   of the measured chains (event enqueued on the bus → the Job's POST answered; the pod's
   `commit` container seen terminated on a watch → the dispatcher completed the message).

A watch of pods and Jobs in each chain namespace records when each milestone was first seen
(pod created, scheduled, each container running/terminated, Succeeded, Job Complete) for the
breakdown printed as notes on stderr.

Usage: `.venv/bin/python bench/bench_kubernetes.py [--quick] [--keep]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import REPO, fmt, note, report, scratch

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.kube.cluster

SKIPPED = 2
CONCURRENCY = 32
"""API calls in flight on both sides of the creates measure (the executor's default)."""
HANDLER_IMAGE = os.environ.get("ION_HANDLER_IMAGE", "localhost/ion-handler:dev")
LOCAL_BASE = "localhost/ion-base:bookworm-py311"
WORKER_SCRIPT = (
    'mkdir -p "$HANDLER_BASE_DIR/out/events" && '
    'printf \'[{"key":"eventType","value":"%s"}]\' > "$HANDLER_BASE_DIR/out/events/e.json"'
)
"""The no-op module: writes one event file (the `mkdir -p` lets the bare Job run it too)."""


# -- prerequisites ---------------------------------------------------------------------------------


def _docker(host: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        env={**os.environ, "DOCKER_HOST": host},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def docker_host() -> str | None:
    """DOCKER_HOST of an engine that answers: $DOCKER_HOST, $ION_DOCKER_HOST, or Ion's own."""
    if shutil.which("docker") is None:
        return None
    cache = os.environ.get("ION_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ion"
    )
    candidates = [
        os.environ.get("DOCKER_HOST", ""),
        os.environ.get("ION_DOCKER_HOST", ""),
        f"unix://{cache}/docker/docker.sock",
    ]
    for host in filter(None, candidates):
        try:
            if _docker(host, "version", "--format", "{{.Server.Version}}").returncode == 0:
                return host
        except subprocess.TimeoutExpired:
            continue
    return None


def ensure_handler_image(host: str) -> str | None:
    """None once the engine holds the handler image (built if missing), else why not."""
    if _docker(host, "image", "inspect", HANDLER_IMAGE).returncode == 0:
        return None
    base = os.environ.get("BASE_IMAGE", "")
    if not base and _docker(host, "image", "inspect", LOCAL_BASE).returncode == 0:
        base = LOCAL_BASE
    if not base:
        return f"{HANDLER_IMAGE} is not built and there is no base image to build it on"
    note(f"building {HANDLER_IMAGE} on {base} (tools/docker/images.py --only handler)")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools/docker/images.py"),
            "--base-image",
            base,
            "--only",
            "handler",
        ],
        env={**os.environ, "DOCKER_HOST": host},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        return f"building {HANDLER_IMAGE} failed: {done.stderr.strip()[-500:]}"
    return None


def missing() -> str | None:
    """Why this bench cannot run here, or None."""
    try:
        import kubernetes  # noqa: F401

        from tests.kube.cluster import missing_prerequisites
    except ImportError as err:
        return f"cannot import the cluster harness or the kubernetes package: {err}"
    reason = missing_prerequisites(allow_build=False)
    if reason:
        return reason
    host = docker_host()
    if host is None:
        return (
            "no Docker engine answers (DOCKER_HOST, ION_DOCKER_HOST or tools/docker/prepare.sh's) "
            f"to provide {HANDLER_IMAGE}"
        )
    if reason := ensure_handler_image(host):
        return reason
    os.environ["DOCKER_HOST"] = host  # LocalCluster.import_docker_image runs `docker save`
    return None


# -- small helpers ---------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def span(values: list[float]) -> str:
    return f"{fmt(min(values))}-{fmt(max(values))}" if values else "-"


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system, all threads) each process has used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    """Milliseconds of CPU per Job that each process spent between two `cpu_seconds`."""
    return {k: (after[k] - before.get(k, 0.0)) * 1000 / jobs for k in after}


def sync_client(kubeconfig: Path, pool: int) -> Any:
    """The `kubernetes` package's sync ApiClient with a connection pool of `pool`."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


def no_pods_quota(api: Any, namespace: str) -> None:
    """A ResourceQuota of `count/pods: 0`: Jobs may exist, pods may not be created."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    body = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods"},
        "spec": {"hard": {"count/pods": "0"}},
    }
    core.create_namespaced_resource_quota(namespace, body)
    # No quota controller runs on the test cluster: set the usage ourselves (admission then
    # refuses every pod as over quota; without a status it refuses them as "status unknown").
    body["status"] = {"hard": {"count/pods": "0"}, "used": {"count/pods": "0"}}
    core.replace_namespaced_resource_quota_status("no-pods", namespace, body)


def delete_jobs(api: Any, namespace: str, timeout: float = 120) -> None:
    """Delete every Job of the namespace and wait until none is listed."""
    from kubernetes import client

    batch = client.BatchV1Api(api)
    batch.delete_collection_namespaced_job(
        namespace, propagation_policy="Background", grace_period_seconds=0
    )
    deadline = time.monotonic() + timeout
    while batch.list_namespaced_job(namespace, limit=1).items:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Jobs of {namespace} still listed {timeout:g} s after deletion")
        time.sleep(0.2)


def make_request(
    job_id: str, spec: Any, *, backends: Any = None, event_type: str = "bench.new"
) -> Any:
    """A JobRequest as a dispatcher builds it (labels included), for `spec`."""
    from ion.core.events import new_root_event
    from ion.core.ports.executor import BackendRefs, JobRequest

    event = new_root_event(event_type, data={"k": "v"})
    return JobRequest(
        job_id=job_id,
        attempt=1,
        event=event,
        spec=spec,
        backends=backends or BackendRefs(),
        labels={
            "ion/modulename": spec.name,
            "ion/eventid": event.event_id,
            "ion/parenteventid": event.context.parent_event_id,
            "ion/correlationid": event.correlation_id,
            "ion/messageid": str(uuid.uuid4()),
            "ion/deliverycount": "1",
            "ion/attempt": "1",
        },
    )


# -- 1. Job creates per second ---------------------------------------------------------------------


def bare_creates(api: Any, namespace: str, manifests: list[dict[str, Any]]) -> float:
    """POST every manifest, CONCURRENCY at once, with the sync client; returns seconds."""
    from kubernetes import client

    batch = client.BatchV1Api(api)

    def one(manifest: dict[str, Any]) -> None:
        reply = batch.create_namespaced_job(
            namespace, manifest, field_validation="Strict", _preload_content=False
        )
        try:
            if reply.status != 201:
                raise RuntimeError(f"create answered {reply.status}: {reply.data[:300]!r}")
            _ = reply.data
        finally:
            reply.release_conn()

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        start = time.perf_counter()
        for _ in pool.map(one, manifests):
            pass
        return time.perf_counter() - start


async def ion_creates(executor: Any, requests: list[Any]) -> float:
    """`submit` every request at once (the executor's client allows CONCURRENCY in flight)."""
    from ion.core.ports.executor import JobState

    start = time.perf_counter()
    results = await asyncio.gather(*(executor.submit(r) for r in requests))
    took = time.perf_counter() - start
    refused = [r for r in results if r.state != JobState.RUNNING]
    if refused:
        raise RuntimeError(f"{len(refused)} Jobs were refused, e.g. {refused[0].reason}")
    return took


async def creates_bench(cluster: Any, tmp: Path, jobs: int, rounds: int) -> None:
    from ion.core.modules import ModuleSpec
    from ion.core.testing.embedded import EmbeddedBackends
    from ion.dispatcher.executors.kubernetes import KubeApi, KubernetesExecutor, PodSettings
    from ion.dispatcher.executors.kubernetes import job_manifest as manifest_of

    ns_ion = cluster.new_namespace("bench-creates-ion")
    ns_bare = cluster.new_namespace("bench-creates-bare")
    plain = sync_client(cluster.kubeconfig, CONCURRENCY)
    for namespace in (ns_ion, ns_bare):
        no_pods_quota(plain, namespace)
    backends = EmbeddedBackends.open(tmp / "creates")
    pod = PodSettings(
        handler_image=HANDLER_IMAGE,
        image_pull_policy="Never",
        default_module_image=cluster.test_image,
    )
    spec = ModuleSpec(
        name="bench-create",
        subscribes_to="bench.new",
        publishes=["bench.done"],
        image=cluster.test_image,
        command=["-c", WORKER_SCRIPT % "bench.done"],
        retry_count=0,
        max_execution_seconds=60,
    )
    refs = _backend_refs(backends)

    def requests(tag: str, count: int) -> list[Any]:
        return [
            make_request(f"bench-create-{tag}-{i:04d}", spec, backends=refs) for i in range(count)
        ]

    api = await KubeApi.connect(kubeconfig=str(cluster.kubeconfig), concurrency=CONCURRENCY)
    executor = KubernetesExecutor(
        api,
        namespace=ns_ion,
        pod=pod,
        blobs=backends.blobs,
        meta=backends.meta,
        bus=backends.bus,
        url_lifetime=timedelta(hours=1),
    )
    ion_rates: list[float] = []
    bare_rates: list[float] = []
    cpu: dict[str, list[dict[str, float]]] = {"ion": [], "bare": []}
    pids = {**cluster.pids(), "bench": os.getpid()}
    try:
        # Warm-up, untimed: connections, TLS, the executor's list and watch, the API server.
        warm = max(20, jobs // 5)
        await asyncio.to_thread(
            bare_creates, plain, ns_bare, [manifest_of(r, pod) for r in requests("wb", warm)]
        )
        await ion_creates(executor, requests("wi", warm))
        for namespace in (ns_bare, ns_ion):
            await asyncio.to_thread(delete_jobs, plain, namespace)
        for n in range(rounds):
            manifests = [manifest_of(r, pod) for r in requests(f"b{n}", jobs)]
            ion_requests = requests(f"i{n}", jobs)
            took: dict[str, float] = {}
            for side in ("bare", "ion") if n % 2 == 0 else ("ion", "bare"):
                before = cpu_seconds(pids)
                if side == "bare":
                    took[side] = await asyncio.to_thread(bare_creates, plain, ns_bare, manifests)
                else:
                    took[side] = await ion_creates(executor, ion_requests)
                cpu[side].append(cpu_per_job(before, cpu_seconds(pids), jobs))
                await asyncio.to_thread(delete_jobs, plain, ns_bare if side == "bare" else ns_ion)
                await asyncio.sleep(2)  # the controllers' work on the deleted Jobs trails off
            bare, ion = took["bare"], took["ion"]
            bare_rates.append(jobs / bare)
            ion_rates.append(jobs / ion)
            note(
                f"creates round {n + 1}: Ion {jobs / ion:.0f} Jobs/s, bare {jobs / bare:.0f}"
                f" Jobs/s, ratio {bare / ion:.2f} (load {os.getloadavg()[0]:.1f})"
            )
    finally:
        await executor.aclose()
        plain.close()
        for backend in (backends.bus, backends.blobs, backends.meta):
            await backend.aclose()
    ratios = [i / b for i, b in zip(ion_rates, bare_rates, strict=True)]
    note(
        f"creates: per-round ratios {span(ratios)}, median {median(ratios):.2f}, geometric mean"
        f" {statistics.geometric_mean(ratios):.2f}; Ion {span(ion_rates)} Jobs/s, bare"
        f" {span(bare_rates)} Jobs/s"
    )
    for side, rows in cpu.items():
        names = sorted(rows[0], key=lambda k: -rows[0][k])
        parts = [f"{k} {median([r[k] for r in rows]):.1f}" for k in names]
        note(f"creates: CPU ms per Job while {side} created (median): {', '.join(parts)}")
    report(
        "kube.creates",
        median(ion_rates),
        "jobs/s",
        baseline=median(bare_rates),
        target=">=100jobs/s,ratio>=0.8",
    )


def _backend_refs(backends: Any) -> Any:
    from ion.core.ports.executor import BackendRefs

    env = backends.env
    return BackendRefs(
        bus_url=env["ION_BUS__URL"], blobs_url=env["ION_BLOBS__URL"], meta_url=env["ION_META__URL"]
    )


# -- 2. per hop --------------------------------------------------------------------------------------


class Observer:
    """Watches the Jobs and pods of a namespace; records when each milestone was first seen."""

    def __init__(self, api: Any, namespace: str) -> None:
        self._api = api
        self._namespace = namespace
        self.seen: dict[str, dict[str, float]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        ready = [asyncio.Event(), asyncio.Event()]
        self._tasks = [
            asyncio.create_task(
                self._follow(f"/apis/batch/v1/namespaces/{self._namespace}/jobs", ready[0])
            ),
            asyncio.create_task(
                self._follow(f"/api/v1/namespaces/{self._namespace}/pods", ready[1])
            ),
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 30)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _mark(self, name: str, milestone: str, now: float) -> None:
        self.seen.setdefault(name, {}).setdefault(milestone, now)

    def _record(self, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        if obj.get("kind") == "Job":
            name = meta.get("name", "")
            self._mark(name, "job", now)
            for condition in status.get("conditions") or []:
                if condition.get("status") == "True" and condition.get("type") in (
                    "Complete",
                    "Failed",
                ):
                    self._mark(name, condition["type"].lower(), now)
            return
        labels = meta.get("labels") or {}
        name = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or ""
        if not name:
            return
        self._mark(name, "pod", now)
        if (obj.get("spec") or {}).get("nodeName"):
            self._mark(name, "scheduled", now)
        for entry in (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        ):
            state = entry.get("state") or {}
            if "running" in state:
                self._mark(name, f"{entry.get('name')}.running", now)
            if "terminated" in state:
                self._mark(name, f"{entry.get('name')}.running", now)
                self._mark(name, f"{entry.get('name')}.done", now)
        if status.get("phase") in ("Succeeded", "Failed"):
            self._mark(name, status["phase"].lower(), now)

    async def _follow(self, path: str, ready: asyncio.Event) -> None:
        from ion.core import errors

        while True:
            try:
                listing = await self._api.request("GET", path)
                now = time.time()
                for item in listing.get("items") or []:
                    item.setdefault("kind", "Job" if "/jobs" in path else "Pod")
                    self._record(item, now)
                version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
                ready.set()
                while True:
                    params = {"resourceVersion": version, "timeoutSeconds": "600"}
                    async for event in self._api.watch(path, params=params):
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            raise errors.TransientError(str(obj.get("message", "")))
                        version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self._record(obj, time.time())
            except asyncio.CancelledError:
                raise
            except errors.IonError as err:
                note(f"observer: watch of {path} broke ({err}); listing again")
                await asyncio.sleep(0.2)


class TimedExecutor:
    """The executor, with the time of each call the dispatchers make (wall clock, seconds)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.jobs: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def submit(self, job: Any) -> Any:
        record = self.jobs.setdefault(
            job.job_id,
            {"module": job.spec.name, "correlation": job.event.correlation_id},
        )
        record.setdefault("submit", time.time())
        result = await self._inner.submit(job)
        record.setdefault("created", time.time())
        return result

    async def wait(self, job_id: str) -> Any:
        result = await self._inner.wait(job_id)
        record = self.jobs.setdefault(job_id, {})
        record.setdefault("result", time.time())
        record["state"] = result.state
        record["reason"] = result.reason
        self.changed.set()
        return result

    async def delete(self, job_id: str) -> None:
        # The dispatcher deletes the Job right after the bus accepted the completion.
        self.jobs.setdefault(job_id, {}).setdefault("settled", time.time())
        self.changed.set()
        await self._inner.delete(job_id)


def bare_chain(
    api: Any, namespace: str, manifests: list[dict[str, Any]]
) -> list[tuple[float, float]]:
    """Create each Job after the previous one is Complete; (create called, Complete seen) each."""
    from kubernetes import client, watch

    batch = client.BatchV1Api(api)
    times = []
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        start = time.time()
        created = batch.create_namespaced_job(namespace, manifest)
        stream = watch.Watch()
        done = False
        for event in stream.stream(
            batch.list_namespaced_job,
            namespace,
            field_selector=f"metadata.name={name}",
            resource_version=created.metadata.resource_version,
            timeout_seconds=180,
        ):
            for condition in event["object"].status.conditions or []:
                if condition.status != "True":
                    continue
                if condition.type == "Failed":
                    stream.stop()
                    raise RuntimeError(f"bare Job {name} failed: {condition.message}")
                if condition.type == "Complete":
                    done = True
            if done:
                stream.stop()
                break
        if not done:
            raise RuntimeError(f"bare Job {name} did not complete within 180 s")
        times.append((start, time.time()))
    return times


def bare_manifest(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    """The executor's Job with `ion-handler --help` for prepare and commit, named `name`."""
    bare = copy.deepcopy(manifest)
    bare["metadata"] = {"name": name, "labels": {"app.kubernetes.io/name": "bench-bare"}}
    spec = bare["spec"]["template"]["spec"]
    for container in spec["initContainers"] + spec["containers"]:
        if container["name"] in ("prepare", "commit"):
            container["args"] = ["--help"]
    bare["spec"]["template"]["metadata"] = {"labels": {"app.kubernetes.io/name": "bench-bare"}}
    return bare


class Chain:
    """K no-op modules on a DispatcherPool over the Kubernetes executor, and bare Jobs beside it."""

    def __init__(self, cluster: Any, tmp: Path, hops: int) -> None:
        self.cluster = cluster
        self.tmp = tmp
        self.hops = hops
        self.ion: list[dict[str, Any]] = []  # per measured flow
        self.bare: list[dict[str, Any]] = []

    def settings(self, namespace: str, backends: Any) -> Any:
        from ion.core.config import load_settings

        env = {
            **backends.env,
            "ION_HOME": str(self.tmp / "home"),
            "ION_DISPATCHER__EXECUTOR": "kubernetes",
            "ION_KUBERNETES__KUBECONFIG": str(self.cluster.kubeconfig),
            "ION_KUBERNETES__NAMESPACE": namespace,
            "ION_KUBERNETES__HANDLER_IMAGE": HANDLER_IMAGE,
            "ION_KUBERNETES__IMAGE_PULL_POLICY": "Never",
            "ION_KUBERNETES__PENDING_TIMEOUT_SECONDS": "60",
            "ION_KUBERNETES__DEADLINE_ALLOWANCE_SECONDS": "60",
        }
        settings = load_settings(environ=env)
        kube = settings.kubernetes.model_copy(update={"host_path_mounts": [str(self.tmp)]})
        return settings.model_copy(update={"kubernetes": kube})

    def spec(self, i: int) -> Any:
        from ion.core.modules import ModuleSpec

        return ModuleSpec(
            name=f"hop-{i}",
            subscribes_to=f"hop.{i}",
            publishes=[f"hop.{i + 1}"],
            image=self.cluster.test_image,
            command=["-c", WORKER_SCRIPT % f"hop.{i + 1}"],
            retry_count=0,
            max_execution_seconds=60,
        )

    async def run(self, rounds: int) -> None:
        from ion.core.records import ModuleRecord
        from ion.core.testing.embedded import EmbeddedBackends
        from ion.dispatcher.embedded import dispatcher_options
        from ion.dispatcher.executors.kubernetes import KubeApi, KubernetesExecutor, job_manifest
        from ion.dispatcher.pool import DispatcherPool

        ns_ion = self.cluster.new_namespace("bench-chain-ion")
        ns_bare = self.cluster.new_namespace("bench-chain-bare")
        backends = EmbeddedBackends.open(self.tmp / "backends")
        (self.tmp / "backends").mkdir(parents=True, exist_ok=True)
        await backends.watch(*(f"hop.{i}" for i in range(self.hops + 1)))
        settings = self.settings(ns_ion, backends)
        plain = sync_client(self.cluster.kubeconfig, 4)
        watch_api = await KubeApi.connect(kubeconfig=str(self.cluster.kubeconfig))
        observers = {"ion": Observer(watch_api, ns_ion), "bare": Observer(watch_api, ns_bare)}
        for observer in observers.values():
            await observer.start()
        inner = await KubernetesExecutor.from_settings(
            settings, blobs=backends.blobs, meta=backends.meta, bus=backends.bus
        )
        executor = TimedExecutor(inner)
        # The bare Jobs: the executor's own manifest of each module, helper steps made trivial.
        pod_settings = inner._pod  # the executor's PodSettings, so the shapes are the same
        templates = [
            job_manifest(
                make_request(f"t{i}", self.spec(i), backends=_backend_refs(backends)),
                pod_settings,
            )
            for i in range(self.hops)
        ]
        try:
            async with DispatcherPool(
                bus=backends.bus,
                meta=backends.meta,
                executor=executor,
                options=dispatcher_options(settings, working_dir=None),
            ) as pool:
                now = datetime.now(UTC)
                for i in range(self.hops):
                    spec = self.spec(i)
                    await pool.start(ModuleRecord(id=spec.name, spec=spec, created_at=now))
                for n in range(rounds + 1):  # the first of each is a warm-up
                    for side in ("bare", "ion") if n % 2 == 0 else ("ion", "bare"):
                        if side == "bare":
                            bare = await self.bare_flow(
                                plain, ns_bare, templates, f"r{n}", observers["bare"]
                            )
                        else:
                            ion = await self.ion_flow(
                                executor, backends, settings, observers["ion"]
                            )
                        await asyncio.sleep(1)
                    if n:
                        self.bare.append(bare)
                        self.ion.append(ion)
                        note(
                            f"chain round {n}: Ion {ion['per_hop']:.2f} s/hop, bare"
                            f" {bare['per_hop']:.2f} s/hop (to pod Succeeded"
                            f" {bare['per_hop_pod']:.2f}), ratio"
                            f" {ion['per_hop'] / bare['per_hop']:.2f}"
                            f" (load {os.getloadavg()[0]:.1f})"
                        )
        finally:
            for observer in observers.values():
                await observer.stop()
            await inner.aclose()
            await watch_api.aclose()
            plain.close()
            for backend in (backends.bus, backends.blobs, backends.meta):
                await backend.aclose()

    async def bare_flow(
        self,
        plain: Any,
        namespace: str,
        templates: list[dict[str, Any]],
        tag: str,
        observer: Observer,
    ) -> dict[str, Any]:
        manifests = [bare_manifest(t, f"bare-{tag}-hop-{i}") for i, t in enumerate(templates)]
        times = await asyncio.to_thread(bare_chain, plain, namespace, manifests)
        await asyncio.sleep(0.5)  # let the observer see the pods' last updates
        hops = []
        for manifest, (start, complete) in zip(manifests, times, strict=True):
            seen = dict(observer.seen.get(manifest["metadata"]["name"], {}))
            seen["create_called"] = start
            seen["complete_seen"] = complete
            hops.append(seen)
        await asyncio.to_thread(delete_jobs, plain, namespace)
        return {
            "per_hop": statistics.fmean(complete - start for start, complete in times),
            "per_hop_pod": statistics.fmean(
                h.get("succeeded", h["complete_seen"]) - h["create_called"] for h in hops
            ),
            "hops": hops,
        }

    async def ion_flow(
        self, executor: TimedExecutor, backends: Any, settings: Any, observer: Observer
    ) -> dict[str, Any]:
        from ion.core.events import Event
        from ion.core.ports.executor import JobState
        from ion.management.control import raise_root_event

        start = time.time()
        root = await raise_root_event(
            bus=backends.bus,
            blobs=backends.blobs,
            meta=backends.meta,
            url_lifetime=timedelta(hours=1),
            event_type="hop.0",
        )
        deadline = time.monotonic() + 60 + 60 * self.hops
        while True:
            executor.changed.clear()
            mine = {
                r["module"]: (job_id, r)
                for job_id, r in executor.jobs.items()
                if r.get("correlation") == root.correlation_id
            }
            failed = [
                r for _, r in mine.values() if r.get("state") not in (None, JobState.SUCCEEDED)
            ]
            if failed:
                raise RuntimeError(f"a hop failed: {failed[0].get('reason')}")
            if len(mine) == self.hops and all("settled" in r for _, r in mine.values()):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the chain did not settle in time: {mine}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(executor.changed.wait(), 1)
        await asyncio.sleep(0.5)  # let the observer see the pods' last updates
        enqueued: dict[str, float] = {}
        for i in range(self.hops + 1):
            for message in await backends.published(f"hop.{i}"):
                event = Event.from_json(message.body)
                if event.correlation_id == root.correlation_id:
                    enqueued[f"hop.{i}"] = message.enqueued_at.timestamp()
        hops = []
        for i in range(self.hops):
            job_id, record = mine[f"hop-{i}"]
            seen = dict(observer.seen.get(job_id, {}))
            seen.update({k: v for k, v in record.items() if isinstance(v, float)})
            seen["event"] = enqueued[f"hop.{i}"]
            seen["child"] = enqueued[f"hop.{i + 1}"]
            hops.append(seen)
        end = max(h["settled"] for h in hops)
        return {"per_hop": (end - start) / self.hops, "start": start, "hops": hops}

    def summary(self) -> None:
        ion_hop = [f["per_hop"] for f in self.ion]
        bare_hop = [f["per_hop"] for f in self.bare]
        bare_pod = [f["per_hop_pod"] for f in self.bare]
        ratios = [i / b for i, b in zip(ion_hop, bare_hop, strict=True)]
        note(f"per hop: Ion {span(ion_hop)} s, bare {span(bare_hop)} s, ratios {span(ratios)}")
        ion_hops = [h for f in self.ion for h in f["hops"]]
        bare_hops = [h for f in self.bare for h in f["hops"]]

        def gaps(hops: list[dict[str, float]], steps: list[tuple[str, str]]) -> str:
            parts = []
            for a, b in steps:
                values = [h[b] - h[a] for h in hops if a in h and b in h]
                parts.append(f"{a}→{b} {median(values):.2f}")
            return ", ".join(parts)

        pod_steps = [
            ("job", "pod"),
            ("pod", "scheduled"),
            ("scheduled", "prepare.running"),
            ("prepare.running", "prepare.done"),
            ("prepare.done", "worker.done"),
            ("worker.done", "commit.running"),
            ("commit.running", "commit.done"),
            ("commit.done", "succeeded"),
        ]
        note("median seconds between milestones as first seen on a watch of the namespace:")
        note(
            "  Ion:  "
            + gaps(
                ion_hops,
                [("event", "submit"), ("submit", "created"), ("created", "job"), *pod_steps],
            )
        )
        note(
            "        "
            + gaps(
                ion_hops,
                [
                    ("created", "child"),
                    ("child", "commit.done"),
                    ("commit.done", "result"),
                    ("result", "settled"),
                    ("succeeded", "complete"),
                ],
            )
        )
        note(
            "  bare: "
            + gaps(bare_hops, [("create_called", "job"), *pod_steps, ("succeeded", "complete")])
            + ", "
            + gaps(bare_hops, [("complete", "complete_seen")])
        )
        report(
            "kube.per_hop",
            median(ion_hop),
            "s",
            baseline=median(bare_hop),
            target="ratio<=1.1",
        )
        report("kube.per_hop_vs_pod_succeeded", median(ion_hop), "s", baseline=median(bare_pod))
        created = [h["created"] - h["event"] for h in ion_hops]
        settled = [h["settled"] - h["commit.done"] for h in ion_hops if "commit.done" in h]
        bare_created = [h["job"] - h["create_called"] for h in bare_hops if "job" in h]
        bare_done = [h["complete_seen"] - h["succeeded"] for h in bare_hops if "succeeded" in h]
        note(
            f"event→Job created: median {median(created):.3f} s, p90 {p90(created):.3f} s"
            f" over {len(created)} hops; Job finished→settled: median {median(settled):.3f} s,"
            f" p90 {p90(settled):.3f} s"
        )
        report(
            "kube.event_to_job_created.median",
            median(created) * 1000,
            "ms",
            baseline=median(bare_created) * 1000,
        )
        report(
            "kube.event_to_job_created.p90",
            p90(created) * 1000,
            "ms",
            baseline=p90(bare_created) * 1000,
        )
        report(
            "kube.job_finished_to_settled.median",
            median(settled) * 1000,
            "ms",
            baseline=median(bare_done) * 1000,
        )
        report(
            "kube.job_finished_to_settled.p90",
            p90(settled) * 1000,
            "ms",
            baseline=p90(bare_done) * 1000,
        )


# -- main ------------------------------------------------------------------------------------------


async def run(cluster: Any, tmp: Path, args: argparse.Namespace) -> None:
    jobs = args.jobs or (100 if args.quick else 200)
    rounds = 2 if args.quick else 6
    note(
        f"creates: {jobs} Jobs a round, {rounds} rounds; baseline = sync kubernetes client,"
        f" {CONCURRENCY} threads, same manifests, namespace quota count/pods=0"
    )
    if args.only != "chain":
        await creates_bench(cluster, tmp, jobs, rounds)
    if args.only == "creates":
        return
    hops = args.hops
    chain_rounds = 2 if args.quick else 4
    note(
        f"chain: {hops} no-op modules, {chain_rounds} measured flows; baseline = {hops} bare"
        " Jobs of the same shape (prepare/commit: ion-handler --help), one after another"
    )
    chain = Chain(cluster, tmp / "chain", hops)
    (tmp / "chain").mkdir()
    await chain.run(chain_rounds)
    chain.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (smaller, fewer reps)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--jobs", type=int, default=0, help="Jobs per creates round")
    parser.add_argument("--hops", type=int, default=3, help="modules in the chain")
    parser.add_argument(
        "--only", choices=("creates", "chain"), default="", help="run one measure only"
    )
    args = parser.parse_args()
    if reason := missing():
        print(f"bench_kubernetes: skipped: {reason}", file=sys.stderr)
        sys.exit(SKIPPED)

    from tests.kube.cluster import LocalCluster

    note(f"{os.cpu_count()} CPUs, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with scratch("kube", keep=args.keep) as tmp:
        cluster = LocalCluster(tmp / "cluster", log=note)
        (tmp / "cluster").mkdir()
        started = time.monotonic()
        cluster.start()
        try:
            note(f"cluster up in {time.monotonic() - started:.1f} s (slot {cluster.slot})")
            started = time.monotonic()
            cluster.import_docker_image(HANDLER_IMAGE)
            note(f"{HANDLER_IMAGE} imported in {time.monotonic() - started:.1f} s")
            asyncio.run(run(cluster, tmp, args))
        finally:
            cluster.stop()
    note(f"load at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
