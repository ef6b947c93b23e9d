"""The Kubernetes executor on a real one-node cluster: real Jobs, real pods, the real handler image.

The executor contract runs with embedded backends under the test's tmp_path, which the pods
mount at the same path (the one-node development mode, `host_path_mounts`); modules that give
only a command run on the cluster's busybox test image. Faults follow: an image that does not
exist, a restart that adopts a running Job, the API server refusing a Job, an out-of-memory
module.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ion.core.ports.executor import JobPhase, JobState
from ion.core.testing.embedded import EmbeddedBackends
from ion.core.testing.executor_contract import ExecutorContract, RequestFactory
from ion.dispatcher.executors.kubernetes import (
    KubeApi,
    KubeApiError,
    KubernetesExecutor,
    PodSettings,
)
from tests.kube.ion import KubeIon, service_account_api

pytestmark = pytest.mark.timeout(300)

WRITES = """
echo made > "$HANDLER_BASE_DIR/out/data/result.txt"
printf '[{"key":"eventType","value":"thing.done"},{"key":"files","value":"result.txt"}]' \\
  > "$HANDLER_BASE_DIR/out/events/done.json"
"""


def _pod_settings(kube_ion: KubeIon, tmp_path: Path, backends: EmbeddedBackends) -> PodSettings:
    return PodSettings(
        handler_env=backends.env,
        handler_image=kube_ion.handler_image,
        image_pull_policy="Never",
        host_path_mounts=(str(tmp_path),),
        handler_user=(os.getuid(), os.getgid()),
        default_module_image=kube_ion.cluster.test_image,
        deadline_allowance_seconds=60,
        ttl_seconds_after_finished=120,
    )


async def _executor(
    kube_ion: KubeIon,
    namespace: str,
    backends: EmbeddedBackends,
    tmp_path: Path,
    **kw: Any,
) -> KubernetesExecutor:
    api = await KubeApi.connect(kubeconfig=str(kube_ion.cluster.kubeconfig))
    return KubernetesExecutor(
        api,
        namespace=namespace,
        pod=kw.pop("pod", None) or _pod_settings(kube_ion, tmp_path, backends),
        blobs=backends.blobs,
        meta=backends.meta,
        bus=backends.bus,
        url_lifetime=timedelta(hours=1),
        pending_timeout=kw.pop("pending_timeout", timedelta(seconds=20)),
        resync=timedelta(seconds=30),
        **kw,
    )


class TestKubernetesExecutorContract(ExecutorContract):
    """Everything every executor promises, with Jobs on a real node."""

    @pytest.fixture
    async def executor(
        self,
        kube_ion: KubeIon,
        kube_namespace: str,
        backends: EmbeddedBackends,
        tmp_path: Path,
    ) -> AsyncIterator[KubernetesExecutor]:
        found = await _executor(kube_ion, kube_namespace, backends, tmp_path)
        yield found
        await found.aclose()

    async def test_an_image_that_does_not_exist_fails_at_once_with_the_reason(
        self,
        kube_ion: KubeIon,
        kube_namespace: str,
        backends: EmbeddedBackends,
        tmp_path: Path,
        request_factory: RequestFactory,
    ) -> None:
        executor = await _executor(kube_ion, kube_namespace, backends, tmp_path)
        try:
            job = request_factory("true")
            job = job.model_copy(
                update={"spec": job.spec.model_copy(update={"image": "localhost/no-such-image:1"})}
            )
            await executor.submit(job)
            result = await asyncio.wait_for(executor.wait(job.job_id), 60)
            assert (result.state, result.phase) == (JobState.FAILED, JobPhase.MODULE)
            assert "ErrImageNeverPull" in result.reason and "no-such-image" in result.reason
            # the stuck Job was deleted, not left to wait
            with pytest.raises(KubeApiError) as gone:
                await executor._api.request("GET", executor._path("jobs", job.job_id))
            assert gone.value.status == 404
        finally:
            await executor.aclose()

    async def test_a_restarted_executor_adopts_the_running_job_and_creates_no_second_one(
        self,
        kube_ion: KubeIon,
        kube_namespace: str,
        backends: EmbeddedBackends,
        tmp_path: Path,
        request_factory: RequestFactory,
    ) -> None:
        runs = tmp_path / "runs"
        job = request_factory(f"echo run >> {runs}; sleep 3" + WRITES)
        first = await _executor(kube_ion, kube_namespace, backends, tmp_path)
        await first.submit(job)
        while not runs.exists():
            await asyncio.sleep(0.2)
        await first.aclose()  # the dispatcher dies; the Job runs on
        second = await _executor(kube_ion, kube_namespace, backends, tmp_path)
        try:
            known = await second.status(job.job_id)
            assert known.state == JobState.RUNNING
            again = await second.submit(job)
            assert again.state in (JobState.RUNNING, JobState.SUCCEEDED)
            result = await second.wait(job.job_id)
            assert result.state == JobState.SUCCEEDED
            assert runs.read_text().count("run") == 1
            listing = await second._api.request(
                "GET", second._path("jobs"), params={"labelSelector": "ion/modulename=maker"}
            )
            assert len(listing["items"]) == 1
        finally:
            await second.aclose()

    async def test_an_out_of_memory_module_says_so(
        self,
        kube_ion: KubeIon,
        kube_namespace: str,
        backends: EmbeddedBackends,
        tmp_path: Path,
        request_factory: RequestFactory,
    ) -> None:
        executor = await _executor(kube_ion, kube_namespace, backends, tmp_path)
        try:
            job = request_factory("echo eating; x=a; while true; do x=$x$x; done")
            spec = job.spec.model_copy(
                update={"resources": job.spec.resources.model_copy(update={"memory": "16Mi"})}
            )
            job = job.model_copy(update={"spec": spec})
            await executor.submit(job)
            result = await asyncio.wait_for(executor.wait(job.job_id), 120)
            assert (result.state, result.phase) == (JobState.FAILED, JobPhase.MODULE)
            assert "out of memory" in result.reason and "eating" in result.reason
        finally:
            await executor.aclose()

    async def test_a_job_the_api_server_refuses_fails_with_its_reason(
        self,
        kube_ion: KubeIon,
        kube_namespace: str,
        backends: EmbeddedBackends,
        tmp_path: Path,
        request_factory: RequestFactory,
    ) -> None:
        executor = await _executor(kube_ion, kube_namespace, backends, tmp_path)
        try:
            job = request_factory("true")
            bad = job.spec.model_copy(
                update={"resources": job.spec.resources.model_copy(update={"cpu": "lots"})}
            )
            job = job.model_copy(update={"spec": bad})
            result = await executor.submit(job)
            assert (result.state, result.phase) == (JobState.FAILED, JobPhase.PREPARE)
            assert "refused the Job as invalid" in result.reason and "quantities" in result.reason
            assert (await executor.wait(job.job_id)) == result
        finally:
            await executor.aclose()

    async def test_a_namespace_quota_and_a_missing_permission_are_clear_reasons(
        self,
        kube_ion: KubeIon,
        kube_namespace: str,
        backends: EmbeddedBackends,
        tmp_path: Path,
        request_factory: RequestFactory,
    ) -> None:
        admin = await KubeApi.connect(kubeconfig=str(kube_ion.cluster.kubeconfig))
        ns = f"/api/v1/namespaces/{kube_namespace}"
        try:
            # a quota of no Jobs at all (its status set by hand: the test cluster runs no
            # quota controller, and a quota without status refuses everything as unknown)
            quota: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "no-jobs"},
                "spec": {"hard": {"count/jobs.batch": "0"}},
            }
            created = await admin.request("POST", f"{ns}/resourcequotas", body=quota)
            created["status"] = {
                "hard": {"count/jobs.batch": "0"},
                "used": {"count/jobs.batch": "0"},
            }
            await admin.request("PUT", f"{ns}/resourcequotas/no-jobs/status", body=created)
            executor = await _executor(kube_ion, kube_namespace, backends, tmp_path)
            try:
                job = request_factory("true")
                result = await executor.submit(job)
                assert (result.state, result.phase) == (JobState.FAILED, JobPhase.PREPARE)
                assert "resource quota does not allow the Job" in result.reason
            finally:
                await executor.aclose()
            await admin.request("DELETE", f"{ns}/resourcequotas/no-jobs")

            # a service account that may watch Jobs but not create them
            await admin.request(
                "POST",
                f"{ns}/serviceaccounts",
                body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ro"}},
            )
            rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{kube_namespace}"
            rule = {
                "apiGroups": ["batch", ""],
                "resources": ["jobs", "pods", "pods/log"],
                "verbs": ["get", "list", "watch"],
            }
            await admin.request(
                "POST",
                f"{rbac}/roles",
                body={"kind": "Role", "metadata": {"name": "ro"}, "rules": [rule]},
            )
            await admin.request(
                "POST",
                f"{rbac}/rolebindings",
                body={
                    "kind": "RoleBinding",
                    "metadata": {"name": "ro"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": "ro",
                    },
                    "subjects": [
                        {"kind": "ServiceAccount", "name": "ro", "namespace": kube_namespace}
                    ],
                },
            )
            limited = KubernetesExecutor(
                await service_account_api(admin, kube_namespace, "ro"),
                namespace=kube_namespace,
                pod=_pod_settings(kube_ion, tmp_path, backends),
                blobs=backends.blobs,
                meta=backends.meta,
                bus=backends.bus,
                url_lifetime=timedelta(hours=1),
            )
            try:
                job = request_factory("true", attempt=2)
                result = await limited.submit(job)
                assert (result.state, result.phase) == (JobState.FAILED, JobPhase.PREPARE)
                assert "may not create Jobs here (403 Forbidden" in result.reason
                assert "grant its service account" in result.reason
            finally:
                await limited.aclose()
        finally:
            await admin.aclose()
