"""The Kubernetes deployer: each module's dispatchers run as a Deployment in Ion's namespace.

Per module it applies (server-side apply, so a repeat is harmless and an edited spec rolls
out): a ConfigMap holding the module spec, a ServiceAccount, a Role that may create, read,
watch and delete Jobs and read pods and their logs (nothing else), its RoleBinding, and a
Deployment of `ion-dispatcher serve` with `instance_count` replicas, health probes, and the
backends' credentials from a Secret. With `kubernetes.dispatcher_service_account` set (the Helm
chart sets it), every Deployment runs as that existing account instead, and management makes
no ServiceAccount, Role or RoleBinding. `undeploy` deletes all of them and the module's Jobs;
`runtime` reports the Deployment's ready replicas, its active Jobs and its last error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import yaml

from ion.core import ModuleRecord, attempts, errors, naming, telemetry
from ion.core.config import IonSettings
from ion.core.ports.bus import EventBus, SubscriptionOptions
from ion.dispatcher.executors.kubernetes import (
    BACKENDS_SECRET_DIR,
    MANAGED_BY,
    KubeApi,
    KubeApiError,
    default_namespace,
    label_value,
)
from ion.management.deployers.base import Runtime

log = logging.getLogger(__name__)

FIELD_MANAGER = "ion-management"
SPEC_FILE = "module.yaml"
HEALTH_PORT = 8080


def object_name(module: str) -> str:
    """Name of every object of one module's dispatchers (≤ 63 characters: modules have ≤ 40)."""
    return f"ion-dispatcher-{module}"


def labels(module: str) -> dict[str, str]:
    """Labels of a module's dispatcher objects."""
    return {
        "app.kubernetes.io/name": "ion-dispatcher",
        "app.kubernetes.io/instance": label_value(module),
        "app.kubernetes.io/component": "dispatcher",
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        "app.kubernetes.io/part-of": "ion",
        "ion/modulename": label_value(module),
    }


def manifests(
    record: ModuleRecord, settings: IonSettings, *, namespace: str
) -> list[dict[str, Any]]:
    """Return the objects that run one module's dispatchers, in the order they are applied."""
    k8s = settings.kubernetes
    module = record.spec.name
    name = object_name(module)
    meta = {"name": name, "namespace": namespace, "labels": labels(module)}
    spec_yaml = yaml.safe_dump(record.spec.model_dump(mode="json"), sort_keys=False)
    env = {
        "ION_DISPATCHER__EXECUTOR": "kubernetes",
        # the executors modules' routes may name, as management checked them at create
        "ION_DISPATCHER__ROUTES_TO": settings.dispatcher.routes_to,
        "ION_KUBERNETES__NAMESPACE": namespace,
        "ION_KUBERNETES__HANDLER_IMAGE": k8s.handler_image,
        "ION_KUBERNETES__IMAGE_PULL_POLICY": k8s.image_pull_policy,
        "ION_KUBERNETES__BACKENDS_SECRET": k8s.backends_secret,
        "ION_KUBERNETES__JOB_SERVICE_ACCOUNT": k8s.job_service_account,
        "ION_KUBERNETES__DISPATCHER_SERVICE_ACCOUNT": k8s.dispatcher_service_account,
        "ION_KUBERNETES__TTL_SECONDS_AFTER_FINISHED": str(k8s.ttl_seconds_after_finished),
        "ION_KUBERNETES__DEADLINE_ALLOWANCE_SECONDS": str(k8s.deadline_allowance_seconds),
        "ION_KUBERNETES__PENDING_TIMEOUT_SECONDS": str(k8s.pending_timeout_seconds),
        "ION_BUS__URL": settings.bus.url,
        "ION_BLOBS__URL": settings.blobs.url,
        "ION_META__URL": settings.meta.url,
        "ION_DISPATCHER__HEALTH_PORT": str(HEALTH_PORT),
        "ION_BUS__LOCK_DURATION_SECONDS": str(settings.bus.lock_duration_seconds),
        "ION_BUS__RECEIVE_WAIT_SECONDS": str(settings.bus.receive_wait_seconds),
        "ION_BLOBS__SAS_LIFETIME_HOURS": str(settings.blobs.sas_lifetime_hours),
        "ION_DISPATCHER__SHUTDOWN_GRACE_SECONDS": str(settings.dispatcher.shutdown_grace_seconds),
        # Traces go where management's go (OTEL_* endpoint, sampler; never the headers).
        **telemetry.forwarded_environment(),
        "ION_TELEMETRY__LOG_FORMAT": settings.telemetry.log_format,
        **k8s.settings_env,
    }
    if k8s.pod_labels:  # the dispatcher's Jobs carry them too
        env["ION_KUBERNETES__POD_LABELS"] = json.dumps(k8s.pod_labels)
    resources: dict[str, Any] = {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }
    probe = {"httpGet": {"path": "/healthz", "port": HEALTH_PORT}, "periodSeconds": 10}
    container: dict[str, Any] = {
        "name": "dispatcher",
        "image": k8s.dispatcher_image,
        "imagePullPolicy": k8s.image_pull_policy,
        "args": ["serve", "--spec", f"/etc/ion/spec/{SPEC_FILE}"],
        "env": [{"name": k, "value": v} for k, v in env.items() if v],
        "envFrom": [{"secretRef": {"name": k8s.backends_secret}}] if k8s.backends_secret else [],
        "ports": [{"name": "health", "containerPort": HEALTH_PORT}],  # and /metrics
        "livenessProbe": {**probe, "failureThreshold": 3},
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": HEALTH_PORT},
            "periodSeconds": 2,
        },
        "startupProbe": {**probe, "periodSeconds": 1, "failureThreshold": 60},
        "resources": resources,
        "volumeMounts": [{"name": "spec", "mountPath": "/etc/ion/spec", "readOnly": True}]
        + (
            [{"name": "backends", "mountPath": BACKENDS_SECRET_DIR, "readOnly": True}]
            if k8s.backends_secret
            else []
        ),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    grace = int(settings.dispatcher.shutdown_grace_seconds) + 10
    account = k8s.dispatcher_service_account or name
    rbac = [] if k8s.dispatcher_service_account else _dispatcher_rbac(meta, name, namespace)
    pod_labels = {**k8s.pod_labels, **labels(module)}
    return [
        *rbac,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {SPEC_FILE: spec_yaml},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": record.spec.instance_count,
                "selector": {"matchLabels": labels(module)},
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        # a changed spec rolls the pods, which read it at start; the
                        # health port serves /metrics too (docs/observability.md)
                        "annotations": {
                            "ion/spec-etag": record.etag or "",
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(HEALTH_PORT),
                            "prometheus.io/path": "/metrics",
                        },
                    },
                    "spec": {
                        "serviceAccountName": account,
                        "terminationGracePeriodSeconds": grace,
                        "containers": [container],
                        "volumes": [{"name": "spec", "configMap": {"name": name}}]
                        + (
                            [{"name": "backends", "secret": {"secretName": k8s.backends_secret}}]
                            if k8s.backends_secret
                            else []
                        ),
                    },
                },
            },
        },
    ]


DISPATCHER_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["create", "get", "list", "watch", "delete"],
    },
    {
        "apiGroups": [""],
        "resources": ["pods", "pods/log"],
        "verbs": ["get", "list", "watch"],
    },
]
"""What a dispatcher may do in its namespace (and so what management must hold to grant it)."""


def _dispatcher_rbac(meta: dict[str, Any], name: str, namespace: str) -> list[dict[str, Any]]:
    """A module's own ServiceAccount, Role (`DISPATCHER_RULES`) and RoleBinding."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": DISPATCHER_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def _jobs_selector(module: str) -> str:
    """Label selector of the Jobs a module's dispatchers create."""
    return f"app.kubernetes.io/managed-by={MANAGED_BY},ion/modulename={label_value(module)}"


def _path(obj: dict[str, Any], namespace: str, name: str = "") -> str:
    kind = obj["kind"]
    api_version = obj["apiVersion"]
    plural = {
        "ServiceAccount": "serviceaccounts",
        "ConfigMap": "configmaps",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "Deployment": "deployments",
        "Job": "jobs",
    }[kind]
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    base = f"{root}/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


class KubernetesDeployer:
    """Runs each module's dispatchers as a Deployment in one namespace."""

    def __init__(
        self, api: KubeApi, *, settings: IonSettings, namespace: str, bus: EventBus
    ) -> None:
        self._api = api
        self._settings = settings
        self._namespace = namespace
        self._bus = bus

    @classmethod
    async def from_settings(cls, settings: IonSettings, *, bus: EventBus) -> KubernetesDeployer:
        """A deployer configured by `settings.kubernetes`.

        Raises:
            errors.ConfigError: Kubernetes cannot be reached with the configured credentials.
        """
        k8s = settings.kubernetes
        api = await KubeApi.connect(kubeconfig=k8s.kubeconfig, context=k8s.context)
        return cls(api, settings=settings, namespace=default_namespace(k8s.namespace), bus=bus)

    @property
    def default_provider(self) -> str:
        """2018's default provider."""
        return "kubernetes"

    @property
    def providers(self) -> frozenset[str]:
        """Only Kubernetes."""
        return frozenset({"kubernetes"})

    @property
    def namespace(self) -> str:
        """Where the dispatchers and their Jobs run."""
        return self._namespace

    async def deploy(self, record: ModuleRecord) -> None:
        """Create the module's subscription, then apply its objects (a repeat changes nothing).

        Raises:
            errors.IonError: the API server refused an object (its kind and the cause named).
        """
        spec = record.spec
        await self._bus.ensure_subscription(
            spec.subscribes_to,
            naming.subscription_name(spec.subscribes_to, spec.name),
            SubscriptionOptions(
                max_delivery_count=attempts.max_delivery_count(spec.max_attempts),
                lock_duration=timedelta(seconds=self._settings.bus.lock_duration_seconds),
            ),
        )
        for topic in spec.publishes:
            await self._bus.ensure_topic(topic)
        for obj in manifests(record, self._settings, namespace=self._namespace):
            name = obj["metadata"]["name"]
            try:
                await self._api.request(
                    "PATCH",
                    _path(obj, self._namespace, name),
                    params={
                        "fieldManager": FIELD_MANAGER,
                        "force": "true",
                        "fieldValidation": "Strict",
                    },
                    body=obj,
                    content_type="application/apply-patch+yaml",
                )
            except KubeApiError as err:
                raise errors.IonError(
                    f"cannot apply {obj['kind']} {name} in namespace {self._namespace}: {err}"
                ) from err
        log.info("deployed module %s as Deployment %s", spec.name, object_name(spec.name))

    async def undeploy(self, record: ModuleRecord) -> None:
        """Delete the module's Deployment, Jobs, ConfigMap, RBAC objects and subscription."""
        name = object_name(record.spec.name)
        template = manifests(record, self._settings, namespace=self._namespace)
        for obj in reversed(template):
            await self._delete(_path(obj, self._namespace, name))
        selector = _jobs_selector(record.spec.name)
        jobs = f"/apis/batch/v1/namespaces/{self._namespace}/jobs"
        try:
            await self._api.request(
                "DELETE",
                jobs,
                params={"labelSelector": selector, "propagationPolicy": "Background"},
            )
        except KubeApiError as err:
            log.warning("could not delete the Jobs of %s: %s", record.spec.name, err)
        topic = record.spec.subscribes_to
        await self._bus.delete_subscription(
            topic, naming.subscription_name(topic, record.spec.name)
        )

    async def _delete(self, path: str) -> None:
        try:
            await self._api.request("DELETE", path, body={"propagationPolicy": "Background"})
        except KubeApiError as err:
            if err.status != 404:
                raise errors.IonError(f"cannot delete {path}: {err}") from err

    async def runtime(self, record: ModuleRecord) -> Runtime:
        """Return the Deployment's ready replicas, the module's active Jobs and its last error."""
        name = object_name(record.spec.name)
        deployment_path = f"/apis/apps/v1/namespaces/{self._namespace}/deployments/{name}"
        selector = _jobs_selector(record.spec.name)
        try:
            deployment, jobs, pods = await asyncio.gather(
                self._api.request("GET", deployment_path),
                self._api.request(
                    "GET",
                    f"/apis/batch/v1/namespaces/{self._namespace}/jobs",
                    params={"labelSelector": selector},
                ),
                self._api.request(
                    "GET",
                    f"/api/v1/namespaces/{self._namespace}/pods",
                    params={
                        "labelSelector": ",".join(
                            f"{k}={v}" for k, v in labels(record.spec.name).items()
                        )
                    },
                ),
            )
        except KubeApiError as err:
            if err.status == 404:
                return Runtime(last_error=f"Deployment {name} does not exist")
            return Runtime(last_error=f"cannot read Deployment {name}: {err}")
        except errors.TransientError as err:
            return Runtime(last_error=str(err))
        status = deployment.get("status") or {}
        active = sum(
            1 for job in jobs.get("items") or [] if (job.get("status") or {}).get("active")
        )
        return Runtime(
            dispatchers_running=int(status.get("readyReplicas") or 0),
            jobs_in_flight=active,
            last_error=_last_error(status, pods.get("items") or []),
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._api.aclose()


def _last_error(status: dict[str, Any], pods: list[dict[str, Any]]) -> str:
    for pod in pods:
        for entry in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (entry.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
                return f"pod {pod['metadata']['name']}: {waiting['reason']}: {waiting.get('message', '')}".strip()
            last = (entry.get("lastState") or {}).get("terminated") or {}
            if last.get("exitCode"):
                return (
                    f"pod {pod['metadata']['name']}: dispatcher exited with code "
                    f"{last['exitCode']} ({last.get('reason', '')}) {last.get('message', '')}"
                ).strip()
    for condition in status.get("conditions") or []:
        if condition.get("status") == "False" and condition.get("message"):
            return f"{condition.get('type')}: {condition['message']}"
    return ""


CLEANUP_KINDS = (
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("v1", "ConfigMap"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("v1", "ServiceAccount"),
)
"""What management and its dispatchers create at run time, in the order `cleanup` deletes it."""


async def cleanup(api: KubeApi, namespace: str, *, secrets: tuple[str, ...] = ()) -> list[str]:
    """Delete every object Ion made at run time in `namespace`, and the named Secrets.

    Dispatcher Deployments, their ConfigMaps and per-module RBAC carry management's label and
    Jobs the executor's, so objects of anything else are never touched. Returns what was
    asked to go, as `kind (selector)` and `Secret name` lines.

    Raises:
        errors.IonError: the API server refused a deletion (the kind and cause named).
    """
    done: list[str] = []
    for api_version, kind in CLEANUP_KINDS:
        owner = MANAGED_BY if kind == "Job" else FIELD_MANAGER
        selector = f"app.kubernetes.io/managed-by={owner}"
        try:
            await api.request(
                "DELETE",
                _path({"apiVersion": api_version, "kind": kind}, namespace),
                params={"labelSelector": selector, "propagationPolicy": "Background"},
            )
        except KubeApiError as err:
            raise errors.IonError(
                f"cannot delete the {kind}s of Ion in {namespace}: {err}"
            ) from err
        done.append(f"{kind} ({selector})")
    for name in secrets:
        try:
            await api.request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except KubeApiError as err:
            if err.status != 404:
                raise errors.IonError(f"cannot delete Secret {namespace}/{name}: {err}") from err
        done.append(f"Secret {name}")
    return done
