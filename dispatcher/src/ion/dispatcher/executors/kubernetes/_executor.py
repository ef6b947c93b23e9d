"""`KubernetesExecutor`: one Kubernetes Job per attempt, followed by a watch, never by polling.

The executor keeps a cache of its Jobs and their pods, filled by a list and kept current by a
watch of each (resumed from the last resource version, listed again on `410 Gone` and every
`resync` seconds). `wait` sleeps until the cache says the attempt ended, then stores the pod's
logs as the attempt's log and returns the outcome as data. A Job's name is the job id, so a
dispatcher that restarts finds its Jobs by name and adopts them; a second `submit` of an id
creates nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ion.core import errors, telemetry
from ion.core.clock import Clock, SystemClock
from ion.core.config import IonSettings
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.executor import JobPhase, JobRequest, JobResult, JobState
from ion.core.ports.meta import MetadataStore
from ion.dispatcher.executors._remote import store_commit, store_failure
from ion.dispatcher.executors.kubernetes._api import KubeApi, KubeApiError, default_namespace
from ion.dispatcher.executors.kubernetes._manifest import (
    COMMIT,
    MANAGED_BY,
    PREPARE,
    REQUEST_ENV,
    WORKER,
    PodSettings,
    job_manifest,
    label_value,
)
from ion.dispatcher.executors.kubernetes._outcome import (
    Outcome,
    read_outcome,
    when,
    worker_ran,
)

log = logging.getLogger(__name__)

LOG_LIMIT_BYTES = 8 * 1024 * 1024
"""At most this much of each container's log is stored."""
WAKE_INTERVAL = 1.0
"""A waiting job is looked at this often even without news (deadlines, stuck pulls)."""
_JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


class KubernetesExecutor:
    """Runs each attempt as a Kubernetes Job in one namespace."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        pod: PodSettings,
        blobs: BlobStore,
        meta: MetadataStore,
        bus: EventBus,
        url_lifetime: timedelta,
        module: str | None = None,
        pending_timeout: timedelta = timedelta(seconds=120),
        resync: timedelta = timedelta(seconds=60),
        clock: Clock | None = None,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._pod = pod
        self._blobs, self._meta, self._bus = blobs, meta, bus
        self._url_lifetime = url_lifetime
        self._pending_timeout = pending_timeout
        self._resync = resync
        self._clock = clock or SystemClock()
        selector = {"app.kubernetes.io/managed-by": MANAGED_BY}
        if module:
            selector["ion/modulename"] = label_value(module)
        self._selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        self._jobs: dict[str, dict[str, Any]] = {}
        self._pods: dict[str, dict[str, Any]] = {}
        self._requests: dict[str, JobRequest] = {}
        self._results: dict[str, JobResult] = {}
        self._waiting_since: dict[str, datetime] = {}
        self._finishing: dict[str, asyncio.Task[JobResult]] = {}
        self._changes: dict[str, asyncio.Event] = {}
        self._cancelled: set[str] = set()
        self._synced = {"jobs": asyncio.Event(), "pods": asyncio.Event()}
        self._followers: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    async def from_settings(
        cls,
        settings: IonSettings,
        *,
        blobs: BlobStore,
        meta: MetadataStore,
        bus: EventBus,
        module: str | None = None,
        default_module_image: str = "",
        clock: Clock | None = None,
    ) -> KubernetesExecutor:
        """An executor configured by `settings.kubernetes`.

        Raises:
            errors.ConfigError: Kubernetes cannot be reached with the configured credentials.
        """
        k8s = settings.kubernetes
        api = await KubeApi.connect(
            kubeconfig=k8s.kubeconfig, context=k8s.context, concurrency=k8s.create_concurrency
        )
        return cls(
            api,
            namespace=default_namespace(k8s.namespace),
            pod=PodSettings(
                handler_image=k8s.handler_image,
                image_pull_policy=k8s.image_pull_policy,
                backends_secret=k8s.backends_secret,
                service_account=k8s.job_service_account,
                ttl_seconds_after_finished=k8s.ttl_seconds_after_finished,
                deadline_allowance_seconds=k8s.deadline_allowance_seconds,
                host_path_mounts=tuple(k8s.host_path_mounts),
                handler_user=_owner(k8s.host_path_mounts[0]) if k8s.host_path_mounts else None,
                default_module_image=default_module_image,
                pod_labels=dict(k8s.pod_labels),
            ),
            blobs=blobs,
            meta=meta,
            bus=bus,
            url_lifetime=timedelta(hours=settings.blobs.sas_lifetime_hours),
            module=module,
            pending_timeout=timedelta(seconds=k8s.pending_timeout_seconds),
            resync=timedelta(seconds=k8s.resync_seconds),
            clock=clock,
        )

    @property
    def namespace(self) -> str:
        """Where the Jobs are."""
        return self._namespace

    # -- the cache ----------------------------------------------------------------------------

    def _path(self, kind: str, name: str = "") -> str:
        base = (
            f"/apis/batch/v1/namespaces/{self._namespace}/jobs"
            if kind == "jobs"
            else f"/api/v1/namespaces/{self._namespace}/pods"
        )
        return f"{base}/{name}" if name else base

    async def _start(self) -> None:
        if self._followers and all(e.is_set() for e in self._synced.values()):
            return
        if not self._followers and not self._closed:
            self._followers = [
                asyncio.create_task(self._follow("jobs", self._jobs, _job_key)),
                asyncio.create_task(self._follow("pods", self._pods, _pod_key)),
            ]
        waits = [asyncio.create_task(e.wait()) for e in self._synced.values()]
        try:
            done, _ = await asyncio.wait(waits, timeout=30)
        finally:
            for waiter in waits:
                waiter.cancel()
        if len(done) != len(waits):
            raise errors.TransientError(
                f"cannot list Ion's Jobs in namespace {self._namespace!r}: the Kubernetes API "
                "server did not answer within 30 s"
            )

    async def _follow(
        self,
        kind: str,
        store: dict[str, dict[str, Any]],
        key_of: Callable[[dict[str, Any]], str],
    ) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.5
        while not self._closed:
            try:
                listing = await self._api.request(
                    "GET", self._path(kind), params={"labelSelector": self._selector}
                )
                version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
                fresh: dict[str, dict[str, Any]] = {}
                for item in listing.get("items") or []:
                    key = key_of(item)
                    if key and _newer(item, fresh.get(key)):
                        fresh[key] = item
                for key in set(store) | set(fresh):
                    if key in fresh:
                        store[key] = fresh[key]
                    else:
                        store.pop(key, None)
                    self._changed(key)
                self._synced[kind].set()
                delay = 0.5
                until = loop.time() + self._resync.total_seconds()
                while (left := until - loop.time()) > 1 and not self._closed:
                    params = {
                        "labelSelector": self._selector,
                        "resourceVersion": version,
                        "timeoutSeconds": str(int(left)),
                    }
                    async for event in self._api.watch(self._path(kind), params=params):
                        kind_of_event = event.get("type", "")
                        obj = event.get("object") or {}
                        if kind_of_event == "ERROR":
                            raise KubeApiError(
                                int(obj.get("code", 500)),
                                str(obj.get("reason", "Error")),
                                str(obj.get("message", "")),
                            )
                        version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                        if kind_of_event == "BOOKMARK":
                            continue
                        key = key_of(obj)
                        if not key:
                            continue
                        if kind_of_event == "DELETED":
                            if store.get(key, {}).get("metadata", {}).get("uid") in (
                                None,
                                (obj.get("metadata") or {}).get("uid"),
                            ):
                                store.pop(key, None)
                        elif _newer(obj, store.get(key)):
                            store[key] = obj
                        self._changed(key)
            except asyncio.CancelledError:
                raise
            except KubeApiError as err:
                if err.status != 410:
                    log.warning("watching %s failed (%s); listing again in %.1fs", kind, err, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30)
            except errors.IonError as err:
                log.warning("watching %s broke (%s); listing again in %.1fs", kind, err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
            except Exception:  # a bug: keep the cache alive, say so
                log.exception("watching %s failed unexpectedly", kind)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    def _changed(self, key: str) -> None:
        if event := self._changes.get(key):
            event.set()

    # -- the port -----------------------------------------------------------------------------

    async def submit(self, job: JobRequest) -> JobResult:
        """Create the attempt's Job, or return the state of the one that exists already."""
        if job.job_id in self._results:
            return self._results[job.job_id]
        await self._start()
        self._requests[job.job_id] = job
        if job.job_id in self._jobs:
            return await self.status(job.job_id)
        try:
            manifest = job_manifest(job, self._pod)
        except ValueError as err:
            return await self._refuse(job, str(err))
        try:
            created = await self._api.request(
                "POST", self._path("jobs"), body=manifest, params={"fieldValidation": "Strict"}
            )
        except KubeApiError as err:
            if err.status == 409:
                log.info("job %s exists already: adopting it", job.job_id)
                return await self.status(job.job_id)
            if err.transient:
                raise errors.TransientError(f"cannot create Job {job.job_id}: {err}") from err
            return await self._refuse(job, _refusal(err))
        if job.job_id not in self._jobs:
            self._jobs[job.job_id] = created
        log.info("created Job %s in %s", job.job_id, self._namespace)
        return JobResult(job_id=job.job_id, state=JobState.RUNNING, started_at=self._clock.now())

    async def status(self, job_id: str) -> JobResult:
        """Return the attempt's state from the cache (asking the server if it is not there)."""
        if job_id in self._results:
            return self._results[job_id]
        await self._start()
        job = await self._job(job_id)
        outcome = self._outcome(job_id)
        return JobResult(
            job_id=job_id,
            state=outcome.state,
            phase=outcome.phase,
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
            reason=outcome.reason,
            started_at=when((job.get("metadata") or {}).get("creationTimestamp")),
        )

    async def wait(self, job_id: str) -> JobResult:
        """Wait until the attempt has ended, store its pod's logs, return its result."""
        if job_id in self._results:
            return self._results[job_id]
        await self._start()
        try:
            await self._job(job_id)
        except errors.NotFoundError:
            if job_id not in self._cancelled or job_id not in self._requests:
                raise
        changed = self._changes.setdefault(job_id, asyncio.Event())
        while True:
            if job_id in self._results:
                return self._results[job_id]
            changed.clear()
            if job_id not in self._jobs and job_id not in self._finishing:
                reason = (
                    "the job was cancelled"
                    if job_id in self._cancelled
                    else "the Job was deleted before it finished"
                )
                outcome = Outcome(state=JobState.FAILED, phase=JobPhase.MODULE, reason=reason)
            else:
                outcome = self._outcome(job_id)
            if outcome.state != JobState.RUNNING or job_id in self._finishing:
                task = self._finishing.get(job_id)
                if task is None:
                    task = asyncio.create_task(self._finish(job_id, outcome))
                    self._finishing[job_id] = task
                return await asyncio.shield(task)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=WAKE_INTERVAL)

    async def logs(self, job_id: str) -> bytes:
        """Return the output of the attempt's containers so far, in the order they ran."""
        await self._start()
        await self._job(job_id)
        return (await self._collect_logs(job_id)).encode()

    async def cancel(self, job_id: str) -> None:
        """Stop the attempt by deleting its Job (its pod is stopped with it)."""
        self._cancelled.add(job_id)
        await self._delete_job(job_id)

    async def list_jobs(self) -> list[JobResult]:
        """Return every attempt of this executor's Jobs in the namespace."""
        await self._start()
        return [await self.status(job_id) for job_id in sorted(self._jobs)]

    async def delete(self, job_id: str) -> None:
        """Delete the attempt's Job and pod, and forget it."""
        await self._delete_job(job_id)
        self._results.pop(job_id, None)
        self._requests.pop(job_id, None)
        self._waiting_since.pop(job_id, None)
        self._changes.pop(job_id, None)
        self._cancelled.discard(job_id)

    async def aclose(self) -> None:
        """Stop watching and close the connections; Jobs keep running."""
        self._closed = True
        for task in self._followers:
            task.cancel()
        await asyncio.gather(*self._followers, return_exceptions=True)
        await asyncio.gather(*self._finishing.values(), return_exceptions=True)
        await self._api.aclose()

    # -- helpers ------------------------------------------------------------------------------

    async def _job(self, job_id: str) -> dict[str, Any]:
        """The Job from the cache, else from the server.

        Raises:
            errors.NotFoundError: there is no such Job.
        """
        if (found := self._jobs.get(job_id)) is not None:
            return found
        try:
            found = await self._api.request("GET", self._path("jobs", job_id))
        except KubeApiError as err:
            if err.status == 404:
                raise errors.NotFoundError(
                    f"no Job {job_id!r} in namespace {self._namespace!r}"
                ) from err
            raise errors.TransientError(f"cannot read Job {job_id}: {err}") from err
        self._jobs.setdefault(job_id, found)
        return found

    def _outcome(self, job_id: str) -> Outcome:
        request = self._request(job_id)
        outcome = read_outcome(
            self._jobs.get(job_id),
            self._pods.get(job_id),
            now=self._clock.now(),
            module_deadline=request.spec.max_execution if request else timedelta(days=7),
            pending_timeout=self._pending_timeout,
            waiting_since=self._waiting_since.get(job_id),
        )
        if outcome.waiting_since is not None:
            self._waiting_since[job_id] = outcome.waiting_since
        return outcome

    def _request(self, job_id: str) -> JobRequest | None:
        if (known := self._requests.get(job_id)) is not None:
            return known
        job = self._jobs.get(job_id)
        if job is None:
            return None
        containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "initContainers"
        ) or []
        for container in containers:
            for env in container.get("env") or []:
                if env.get("name") == REQUEST_ENV:
                    with contextlib.suppress(ValueError):
                        request = JobRequest.model_validate_json(env.get("value", ""))
                        self._requests[job_id] = request
                        return request
        return None

    async def _refuse(self, job: JobRequest, reason: str) -> JobResult:
        log.warning("job %s cannot run: %s", job.job_id, reason)
        result = await self._store_failure(
            job, Outcome(state=JobState.FAILED, phase=JobPhase.PREPARE, reason=reason), ""
        )
        self._results[job.job_id] = result
        return result

    async def _finish(self, job_id: str, outcome: Outcome) -> JobResult:
        try:
            request = self._request(job_id)
            if request is None:
                raise errors.NotFoundError(f"Job {job_id} carries no Ion job request")
            output = await self._collect_logs(job_id)  # before a stop deletes the pod
            self._trace_worker(request, job_id)
            if outcome.stop:
                log.info("stopping job %s: %s", job_id, outcome.reason)
                await self._delete_job(job_id)
            if outcome.state == JobState.SUCCEEDED or outcome.commit:
                result = await self._store_commit(request, outcome, output)
            else:
                result = await self._store_failure(request, outcome, output)
            started = when(
                (self._jobs.get(job_id, {}).get("metadata") or {}).get("creationTimestamp")
            )
            result = result.model_copy(update={"started_at": started or result.started_at})
            self._results[job_id] = result
            return result
        finally:
            self._finishing.pop(job_id, None)

    def _trace_worker(self, request: JobRequest, job_id: str) -> None:
        """The module's container as a `run` span of the attempt, from its pod's status."""
        ran = worker_ran(self._pods.get(job_id))
        if ran is None:
            return
        start, end, code = ran
        telemetry.record_span(
            "run",
            carrier=request.trace_context,
            start=start,
            end=end,
            attributes={
                **telemetry.event_attributes(
                    request.event, module=request.spec.name, attempt=request.attempt
                ),
                telemetry.JOB_ID: request.job_id,
                telemetry.EXECUTOR: "kubernetes",
                "ion.exit_code": code,
            },
            error="" if code == 0 else f"the module exited with code {code}",
        )

    async def _store_commit(self, job: JobRequest, outcome: Outcome, output: str) -> JobResult:
        """The commit step ran and wrote its own documents: store the full log and report."""
        return await store_commit(
            job,
            report=outcome.commit,
            succeeded=outcome.state == JobState.SUCCEEDED,
            reason=outcome.reason,
            output=output,
            blobs=self._blobs,
        )

    async def _store_failure(self, job: JobRequest, outcome: Outcome, output: str) -> JobResult:
        """Prepare or the module failed (commit never ran): store the log and `modulelogs`."""
        return await store_failure(
            job,
            phase=outcome.phase or JobPhase.MODULE,
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
            output=output,
            blobs=self._blobs,
            meta=self._meta,
            bus=self._bus,
            url_lifetime=self._url_lifetime,
        )

    async def _collect_logs(self, job_id: str) -> str:
        pod = self._pods.get(job_id)
        if pod is None:
            return ""
        name = (pod.get("metadata") or {}).get("name", "")
        started = {
            entry.get("name")
            for entry in ((pod.get("status") or {}).get("initContainerStatuses") or [])
            + ((pod.get("status") or {}).get("containerStatuses") or [])
            if "waiting" not in (entry.get("state") or {})
        }

        async def one(container: str) -> str:
            if container not in started:
                return ""
            try:
                text = await self._api.text(
                    f"{self._path('pods', name)}/log",
                    params={"container": container, "limitBytes": str(LOG_LIMIT_BYTES)},
                )
            except (KubeApiError, errors.TransientError) as err:
                return f"[ion] the {container} container's log could not be read: {err}\n"
            return text

        parts = await asyncio.gather(*(one(c) for c in (PREPARE, WORKER, COMMIT)))
        sections = []
        for container, text in zip((PREPARE, WORKER, COMMIT), parts, strict=True):
            if text:
                sections.append(f"[ion] --- {container} ---\n{text}")
        return "".join(s if s.endswith("\n") else s + "\n" for s in sections)

    async def _delete_job(self, job_id: str) -> None:
        try:
            await self._api.request(
                "DELETE",
                self._path("jobs", job_id),
                body={"propagationPolicy": "Background", "gracePeriodSeconds": 5},
            )
        except KubeApiError as err:
            if err.status != 404:
                if err.transient:
                    raise errors.TransientError(f"cannot delete Job {job_id}: {err}") from err
                raise errors.IonError(f"cannot delete Job {job_id}: {err}") from err


def _owner(path: str) -> tuple[int, int]:
    """uid and gid owning `path` (the handler writes there as them)."""
    found = Path(path).stat()
    return found.st_uid, found.st_gid


def _job_key(job: dict[str, Any]) -> str:
    return str((job.get("metadata") or {}).get("name", ""))


def _pod_key(pod: dict[str, Any]) -> str:
    labels: Mapping[str, str] = (pod.get("metadata") or {}).get("labels") or {}
    for label in _JOB_NAME_LABELS:
        if labels.get(label):
            return labels[label]
    return ""


def _newer(obj: dict[str, Any], than: dict[str, Any] | None) -> bool:
    """True if `obj` should replace `than` (a later pod of the same Job, or the same one)."""
    if than is None:
        return True
    mine, theirs = obj.get("metadata") or {}, than.get("metadata") or {}
    if mine.get("uid") == theirs.get("uid"):
        return True
    return str(mine.get("creationTimestamp", "")) >= str(theirs.get("creationTimestamp", ""))


def _refusal(err: KubeApiError) -> str:
    if err.status == 403 and "exceeded quota" in err.message:
        return f"the namespace's resource quota does not allow the Job: {err.message}"
    if err.status == 403:
        return (
            f"the dispatcher may not create Jobs here (403 Forbidden: {err.message}); grant its "
            "service account `create` on jobs in this namespace"
        )
    if err.status in (400, 422):
        return f"the Kubernetes API server refused the Job as invalid: {err.message}"
    return f"the Kubernetes API server refused the Job: {err}"


__all__ = ["KubernetesExecutor"]
