"""The Job manifest of one attempt, in the 2018 shape, as the dict the API server takes.

The pod runs three containers with 2018's names, so `kubectl logs -c worker` scripts keep
working: init container `prepare` (handler image), init container `worker` (the module's
image: it runs only if prepare succeeded, and commit only if it exits 0), and main container
`commit` (handler image). They share the emptyDir `ionvolume` at `/ion`.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ion.core import telemetry
from ion.core.modules import Toleration
from ion.core.ports.executor import JobRequest

BASE_DIR = "/ion"
VOLUME = "ionvolume"
PREPARE, WORKER, COMMIT = "prepare", "worker", "commit"
"""The pod's containers, in the order they run."""

MANAGED_BY = "ion-dispatcher"
JOB_ID_ANNOTATION = "ion/jobid"
REQUEST_ENV = "ION_JOB_REQUEST"
BACKENDS_SECRET_DIR = "/etc/ion/backends"
"""Where the backends Secret's keys are also files (read-only), e.g. a CA bundle."""

_LABEL_VALUE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_LABEL_VALUE_EDGE = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")

# JobRequest.labels keys that become Kubernetes labels (values sanitised; full ids annotated).
_ION_LABELS = (
    "ion/eventid",
    "ion/parenteventid",
    "ion/messageid",
    "ion/deliverycount",
    "ion/modulename",
    "ion/correlationid",
    "ion/attempt",
)
_ANNOTATED = ("ion/eventid", "ion/parenteventid", "ion/messageid", "ion/correlationid")


def label_value(value: str) -> str:
    """Return `value` as a valid label value: ≤ 63 characters of `[A-Za-z0-9._-]`, alphanumeric
    at both ends; a shortened value ends with a hash of the original, so distinct values stay
    distinct."""
    clean = _LABEL_VALUE_EDGE.sub("", _LABEL_VALUE_UNSAFE.sub("-", value))
    if clean == value and len(clean) <= 63:
        return clean
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    head = _LABEL_VALUE_EDGE.sub("", clean[: 63 - 9])
    return f"{head}-{digest}" if head else digest


@dataclass(frozen=True, slots=True, kw_only=True)
class PodSettings:
    """Executor-wide parts of every job pod."""

    handler_image: str
    image_pull_policy: str = "IfNotPresent"
    backends_secret: str = ""
    service_account: str = ""
    ttl_seconds_after_finished: int = 600
    deadline_allowance_seconds: float = 120.0
    host_path_mounts: tuple[str, ...] = ()
    """Host directories mounted at the same path into every container (one-node development
    clusters sharing embedded backends with the host)."""
    handler_user: tuple[int, int] | None = None
    """uid and gid the handler containers run as (the owner of the host paths), if not the
    image's own user."""
    handler_env: dict[str, str] = field(default_factory=dict)
    """Plain settings for the handler containers (backend URLs without credentials)."""
    default_module_image: str = ""
    """Image of modules that give only a command (it must hold what the command needs)."""
    handler_resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"requests": {"cpu": "50m", "memory": "64Mi"}}
    )
    pod_labels: dict[str, str] = field(default_factory=dict)
    """Extra labels on every job pod (Ion's own labels win over them)."""


def job_labels(job: JobRequest) -> dict[str, str]:
    """Return the Job's and its pod's labels: 2018's `ion/*` and the `app.kubernetes.io/*` ones."""
    labels = {
        "app.kubernetes.io/name": "ion-job",
        "app.kubernetes.io/component": "job",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "ion",
        "app.kubernetes.io/instance": label_value(job.spec.name),
        "ion/modulename": label_value(job.spec.name),
        "ion/attempt": str(job.attempt),
        "ion/eventid": label_value(job.event.event_id),
        "ion/correlationid": label_value(job.event.correlation_id),
    }
    for key in _ION_LABELS:
        if job.labels.get(key):
            labels[key] = label_value(job.labels[key])
    return {k: v for k, v in labels.items() if v}


def job_annotations(job: JobRequest) -> dict[str, str]:
    """Return the annotations carrying the full ids that labels may have shortened."""
    annotations = {
        JOB_ID_ANNOTATION: job.job_id,
        "ion/eventid": job.event.event_id,
        "ion/correlationid": job.event.correlation_id,
        "ion/parenteventid": job.event.context.parent_event_id,
        "ion/eventtype": job.event.type,
    }
    for key in _ANNOTATED:
        if job.labels.get(key):
            annotations[key] = job.labels[key]
    return {k: v for k, v in annotations.items() if v}


def _resources(job: JobRequest) -> dict[str, Any]:
    wanted = job.spec.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if wanted.cpu:
        requests["cpu"] = wanted.cpu
    if wanted.memory:
        requests["memory"] = limits["memory"] = wanted.memory
    if wanted.gpu:
        limits["nvidia.com/gpu"] = str(wanted.gpu)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def job_manifest(job: JobRequest, pod: PodSettings) -> dict[str, Any]:
    """Return the Job for one attempt.

    Raises:
        ValueError: the module has no image, and there is no default one for a command.
    """
    module_image = job.spec.image or pod.default_module_image
    if not module_image:
        raise ValueError(
            f"module {job.spec.name!r} has no image: on Kubernetes a module runs from its "
            "container image (set `image`)"
        )
    handler_image = job.spec.handler_image or pod.handler_image
    mount = {"name": VOLUME, "mountPath": BASE_DIR}
    host_mounts = [
        {"name": f"host-{i}", "mountPath": path} for i, path in enumerate(pod.host_path_mounts)
    ]
    handler_mounts: list[dict[str, Any]] = [mount, *host_mounts]
    if pod.backends_secret:  # its keys as files too (a CA bundle for ION_AZURE_CA_FILE)
        handler_mounts.append(
            {"name": "backends", "mountPath": BACKENDS_SECRET_DIR, "readOnly": True}
        )
    security: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    if pod.handler_user is not None:
        security["runAsUser"], security["runAsGroup"] = pod.handler_user
    request_json = job.model_dump_json(exclude={"working_dir"})
    handler_env = [
        {"name": REQUEST_ENV, "value": request_json},
        {"name": "ION_HANDLER__BASE_DIR", "value": BASE_DIR},
        *(
            {"name": name, "value": url}
            for name, url in (
                ("ION_BUS__URL", job.backends.bus_url),
                ("ION_BLOBS__URL", job.backends.blobs_url),
                ("ION_META__URL", job.backends.meta_url),
            )
            if url and name not in pod.handler_env
        ),
        *({"name": k, "value": v} for k, v in sorted(pod.handler_env.items())),
        # The attempt's trace context (TRACEPARENT) and the OTEL_* settings, never secrets:
        # the prepare and commit spans join the dispatcher's attempt span.
        *(
            {"name": k, "value": v}
            for k, v in sorted(telemetry.job_environment(job.trace_context).items())
            if k not in pod.handler_env
        ),
    ]
    env_from = [{"secretRef": {"name": pod.backends_secret}}] if pod.backends_secret else []

    def handler(name: str, step: str) -> dict[str, Any]:
        return {
            "name": name,
            "image": handler_image,
            "imagePullPolicy": pod.image_pull_policy,
            "args": ["job", step],
            "env": handler_env,
            "envFrom": env_from,
            "volumeMounts": handler_mounts,
            "resources": pod.handler_resources,
            "terminationMessagePolicy": "File",
            "securityContext": security,
        }

    module_env = [{"name": "HANDLER_BASE_DIR", "value": BASE_DIR}] + [
        {"name": k, "value": v} for k, v in sorted(job.spec.environment.items())
    ]
    worker: dict[str, Any] = {
        "name": WORKER,
        "image": module_image,
        "imagePullPolicy": job.spec.image_pull_policy or pod.image_pull_policy,
        "env": module_env,
        "envFrom": [{"secretRef": {"name": s}} for s in job.spec.secrets],
        "volumeMounts": [mount, *host_mounts],
        "resources": _resources(job),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if job.spec.command:
        # With its own image, a command is that image's arguments (as `docker run image
        # command...`); on the default image it is the whole command line.
        worker["args" if job.spec.image else "command"] = list(job.spec.command)
    if job.spec.working_dir:
        worker["workingDir"] = job.spec.working_dir

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "initContainers": [handler(PREPARE, "prepare"), worker],
        "containers": [handler(COMMIT, "commit")],
        "volumes": [{"name": VOLUME, "emptyDir": {}}]
        + [
            {"name": f"host-{i}", "hostPath": {"path": path, "type": "Directory"}}
            for i, path in enumerate(pod.host_path_mounts)
        ]
        + (
            [{"name": "backends", "secret": {"secretName": pod.backends_secret}}]
            if pod.backends_secret
            else []
        ),
    }
    service_account = job.spec.service_account or pod.service_account
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if selector := job.spec.node_selector:
        pod_spec["nodeSelector"] = dict(selector)
    if tolerations := job.spec.tolerations:
        pod_spec["tolerations"] = [_toleration(t) for t in tolerations]
    if pull_secrets := job.spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    if job.spec.resources.gpu:
        pod_spec.setdefault("tolerations", []).append(
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        )

    labels = job_labels(job)
    deadline = math.ceil(job.spec.max_execution_seconds + pod.deadline_allowance_seconds)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job.job_id,
            "labels": labels,
            "annotations": job_annotations(job),
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": pod.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": {**pod.pod_labels, **labels}}, "spec": pod_spec},
        },
    }


def _toleration(toleration: Toleration) -> dict[str, Any]:
    out: dict[str, Any] = {"operator": toleration.operator}
    if toleration.key:
        out["key"] = toleration.key
    if toleration.value:
        out["value"] = toleration.value
    if toleration.effect:
        out["effect"] = toleration.effect
    if toleration.toleration_seconds is not None:
        out["tolerationSeconds"] = toleration.toleration_seconds
    return out
