"""The Helm chart `deployment/helm/ion`: linted, rendered and checked offline against the pinned
Kubernetes schema, dry-run on the real API server with strict field validation, then installed
on the test cluster, where the example pipeline runs through the chart's management server,
an upgrade keeps every module, and an uninstall leaves nothing of Ion behind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ion.core import naming
from ion.dispatcher.executors.kubernetes import KubeApi, KubeApiError
from ion.management.control import ControlPlane
from tests.deploy.tools import REPO, require_deploy_tools
from tests.kube import schema
from tests.kube.cluster import LocalCluster
from tests.kube.ion import KubeIon
from tests.kube.pipeline import (
    Stack,
    create_backends_secret,
    example_pipeline,
    ion_objects,
    wait_flow,
)

CHART = REPO / "deployment" / "helm" / "ion"
VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = schema.KUBERNETES_VERSION.removeprefix("v")
CERT_MANAGER = "cert-manager.io/v1"
BIN = Path(__import__("sys").executable).parent


def _helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    helm = require_deploy_tools("helm").helm
    assert helm is not None
    done = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def _template(*args: str, values: Path | None = None) -> list[dict[str, Any]]:
    extra = ["-f", str(values)] if values else []
    if values and "cert-manager" in values.name:
        extra += ["--api-versions", CERT_MANAGER]
    done = _helm(
        "template", "rel", str(CHART), "-n", "ion", "--kube-version", KUBE_VERSION, *extra, *args
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _by(objects: list[dict[str, Any]], kind: str, name_part: str = "") -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name_part in o["metadata"]["name"]]
    assert len(found) == 1, [(o["kind"], o["metadata"]["name"]) for o in found]
    return found[0]


# --- offline: lint, schema, template ---------------------------------------------------------


def test_the_chart_has_values_files_for_each_way_of_running_it() -> None:
    names = {v.name for v in VALUES}
    assert {
        "workload-identity-values.yaml",
        "existing-secret-values.yaml",
        "per-module-rbac-values.yaml",
        "cert-manager-values.yaml",
    } <= names


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda v: v.name if v else "defaults")
def test_helm_lint_strict_passes(values: Path | None) -> None:
    args = ["-f", str(values)] if values else []
    done = _helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *args)
    assert "0 chart(s) failed" in done.stdout
    if values is not None and "cert-manager" in values.name:
        # lint's pretend cluster has no cert-manager API (lint reports `fail` as information)
        assert "install cert-manager or use tls.existingSecret" in done.stderr


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda v: v.name if v else "defaults")
def test_every_rendered_object_is_valid_against_the_pinned_schema(values: Path | None) -> None:
    objects = _template(values=values)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "Role", "RoleBinding", "ServiceAccount"} <= kinds
    for obj in objects:
        if obj["apiVersion"] == CERT_MANAGER:
            continue  # a CRD: not in the Kubernetes schema
        problems = schema.validate(obj)
        assert not problems, (obj["kind"], obj["metadata"]["name"], problems)


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("management.replicas=0", "/management/replicas"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("managment.replicas=1", "managment"),
        ("backends.bus=amqp://x", "/backends/bus"),
        ("config.BUS_URL=x", "'BUS_URL' does not match pattern '^ION_"),
        ("dispatchers.serviceAccountName=Not_A_Name", "/dispatchers/serviceAccountName"),
        ("credentials.workloadIdentity.managementClientId=nope", "managementClientId"),
        ("tracing.otlpEndpoint=collector:4318", "/tracing/otlpEndpoint"),
        ("tracing.sampler=sometimes", "/tracing/sampler"),
        ("metrics.port=0", "/metrics/port"),
    ],
)
def test_bad_values_fail_at_install_naming_the_value(setting: str, complaint: str) -> None:
    done = _helm(
        "template", "rel", str(CHART), "--kube-version", KUBE_VERSION, "--set", setting, check=False
    )
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert complaint in done.stderr, done.stderr


def test_combinations_the_schema_cannot_express_fail_with_what_to_do() -> None:
    both = _helm(
        "template", "rel", str(CHART), "--kube-version", KUBE_VERSION,
        "--set", "tls.existingSecret=mine", "--set", "tls.certManager.enabled=true",
        check=False,
    )  # fmt: skip
    assert both.returncode != 0 and "not both" in both.stderr
    no_crd = _helm(
        "template", "rel", str(CHART), "--kube-version", KUBE_VERSION,
        "--set", "tls.certManager.enabled=true", "--set", "tls.certManager.issuerRef.name=ca",
        check=False,
    )  # fmt: skip
    assert no_crd.returncode != 0 and "install cert-manager" in no_crd.stderr


def test_management_may_not_read_secrets_or_reach_beyond_its_namespace() -> None:
    objects = _template()
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = _by(objects, "Role", "rel-ion-management")
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert not [g for g in granted if g[0] == "secrets" or "*" in g]
    # what the deployer and its cleanup need in shared-account mode, and nothing to grant RBAC
    assert ("deployments", "patch") in granted and ("configmaps", "patch") in granted
    assert ("jobs", "deletecollection") in granted
    assert not [g for g in granted if g[0] in ("roles", "rolebindings", "serviceaccounts")]
    dispatcher = _by(objects, "Role", "rel-ion-dispatcher")
    assert {r for rule in dispatcher["rules"] for r in rule["resources"]} == {
        "jobs",
        "pods",
        "pods/log",
    }


def test_per_module_rbac_lets_management_grant_exactly_the_dispatchers_rules() -> None:
    from ion.management.deployers.kubernetes import DISPATCHER_RULES

    objects = _template(values=CHART / "ci" / "per-module-rbac-values.yaml")
    rules = _by(objects, "Role", "rel-ion-management")["rules"]
    for rule in DISPATCHER_RULES:  # escalation prevention: it must hold what it grants
        assert rule in rules
    settings = _by(objects, "ConfigMap", "rel-ion-management")["data"]
    assert settings["ION_KUBERNETES__DISPATCHER_SERVICE_ACCOUNT"] == ""
    assert not [o for o in objects if o["metadata"]["name"] == "ion-dispatcher"]


def test_workload_identity_annotates_each_account_and_labels_every_pod() -> None:
    objects = _template(values=CHART / "ci" / "workload-identity-values.yaml")
    given = yaml.safe_load((CHART / "ci" / "workload-identity-values.yaml").read_text())
    ids = given["credentials"]["workloadIdentity"]
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    for name, key in (
        ("ion-management", "managementClientId"),
        ("ion-dispatcher", "dispatcherClientId"),
        ("ion-job", "jobClientId"),
    ):
        annotations = accounts[name]["metadata"]["annotations"]
        assert annotations["azure.workload.identity/client-id"] == ids[key]
    pod = _by(objects, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    settings = _by(objects, "ConfigMap", "rel-ion-management")["data"]
    assert json.loads(settings["ION_KUBERNETES__POD_LABELS"]) == {
        "azure.workload.identity/use": "true"
    }
    assert settings["ION_KUBERNETES__BACKENDS_SECRET"] == ""  # no keys anywhere
    assert "envFrom" in pod["spec"]["containers"][0]
    assert not [e for e in pod["spec"]["containers"][0]["envFrom"] if "secretRef" in e]


def test_scheduling_and_pull_values_reach_the_pod_and_settings_hold_no_credentials() -> None:
    values = CHART / "ci" / "existing-secret-values.yaml"
    given = yaml.safe_load(values.read_text())
    objects = _template(values=values)
    pod = _by(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == given["management"]["nodeSelector"]
    assert pod["tolerations"] == given["management"]["tolerations"]
    assert pod["affinity"] == given["management"]["affinity"]
    assert pod["imagePullSecrets"] == [{"name": n} for n in given["imagePullSecrets"]]
    image = pod["containers"][0]["image"]
    assert image == f"{given['image']['registry']}/ion-management:{given['image']['tag']}"
    assert pod["volumes"][0]["secret"]["secretName"] == given["tls"]["existingSecret"]
    # a user-provided Secret: no hook makes or deletes certificates
    hooks = [o for o in objects if o["kind"] == "Job"]
    assert [h["metadata"]["annotations"]["helm.sh/hook"] for h in hooks] == ["pre-delete"]
    assert "--secret=" not in json.dumps(hooks)
    settings = _by(objects, "ConfigMap", "rel-ion-management")["data"]
    text = json.dumps(settings).lower()
    assert "accountkey" not in text and "sharedaccesskey" not in text and "password" not in text


def test_metrics_are_exposed_for_scraping_and_traces_go_to_the_given_collector() -> None:
    values = CHART / "ci" / "existing-secret-values.yaml"
    given = yaml.safe_load(values.read_text())["tracing"]
    objects = _template(values=values)
    template = _by(objects, "Deployment")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9102"
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    assert ports["metrics"] == 9102
    policy = _by(objects, "NetworkPolicy")["spec"]["ingress"][0]["ports"]
    assert {"port": "metrics", "protocol": "TCP"} in policy
    settings = _by(objects, "ConfigMap", "rel-ion-management")["data"]
    assert settings["ION_TELEMETRY__METRICS_PORT"] == "9102"
    assert settings["ION_TELEMETRY__METRICS_HOST"] == "0.0.0.0"
    assert settings["OTEL_EXPORTER_OTLP_ENDPOINT"] == given["otlpEndpoint"]
    assert settings["OTEL_TRACES_SAMPLER"] == given["sampler"]
    assert settings["OTEL_TRACES_SAMPLER_ARG"] == given["samplerArg"]
    # metrics off: no port, no annotation; no endpoint: no OTEL settings
    off = _template("--set", "metrics.enabled=false")
    template = _by(off, "Deployment")["spec"]["template"]
    assert "prometheus.io/scrape" not in template["metadata"]["annotations"]
    assert "metrics" not in {p["name"] for p in template["spec"]["containers"][0]["ports"]}
    settings = _by(off, "ConfigMap", "rel-ion-management")["data"]
    assert not {k for k in settings if k.startswith("OTEL_") or "METRICS" in k}


def test_cert_manager_issues_a_server_certificate_for_the_service_names() -> None:
    objects = _template(values=CHART / "ci" / "cert-manager-values.yaml")
    server = _by(objects, "Certificate", "rel-ion-management")
    assert "rel-ion-management.ion.svc" in server["spec"]["dnsNames"]
    assert "127.0.0.1" in server["spec"]["ipAddresses"]
    assert "server auth" in server["spec"]["usages"]
    client = _by(objects, "Certificate", "client")
    assert client["spec"]["usages"][0] == "client auth"
    assert not [o for o in objects if o["kind"] == "Job" and "certs" in o["metadata"]["name"]]


# --- the real API server ---------------------------------------------------------------------

_PLURALS = {
    "ServiceAccount": "serviceaccounts",
    "ConfigMap": "configmaps",
    "Service": "services",
    "Secret": "secrets",
    "Deployment": "deployments",
    "Job": "jobs",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "NetworkPolicy": "networkpolicies",
}


async def _dry_run(api: KubeApi, namespace: str, obj: dict[str, Any]) -> str | None:
    """The API server's strict verdict on creating `obj` (None: accepted)."""
    version = obj["apiVersion"]
    root = "/api/v1" if version == "v1" else f"/apis/{version}"
    body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    try:
        await api.request(
            "POST",
            f"{root}/namespaces/{namespace}/{_PLURALS[obj['kind']]}",
            body=body,
            params={"dryRun": "All", "fieldValidation": "Strict"},
        )
    except KubeApiError as err:
        return str(err)
    return None


async def test_every_rendered_object_passes_a_strict_server_side_dry_run(
    kube_cluster: LocalCluster, kube_namespace: str
) -> None:
    api = await KubeApi.connect(kubeconfig=str(kube_cluster.kubeconfig))
    try:
        for values in [None, *VALUES]:
            for obj in _template(values=values):
                if obj["apiVersion"] == CERT_MANAGER:
                    continue
                verdict = await _dry_run(api, kube_namespace, obj)
                assert verdict is None, (values, obj["kind"], obj["metadata"]["name"], verdict)
    finally:
        await api.aclose()


async def test_an_unknown_field_passes_lint_and_template_but_not_the_checks(
    kube_cluster: LocalCluster, kube_namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "ion"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "management.yaml"
    text = template.read_text()
    assert "containerPort: {{ .Values.management.grpcPort }}" in text
    template.write_text(text.replace("containerPort: {{", "containerPortt: {{", 1))
    assert _helm("lint", "--strict", str(chart), "--kube-version", KUBE_VERSION).returncode == 0
    rendered = _helm("template", "rel", str(chart), "--kube-version", KUBE_VERSION).stdout
    deployment = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
    assert any("containerPortt" in p for p in schema.validate(deployment))
    api = await KubeApi.connect(kubeconfig=str(kube_cluster.kubeconfig))
    try:
        verdict = await _dry_run(api, kube_namespace, deployment)
    finally:
        await api.aclose()
    assert (
        verdict is not None
        and 'unknown field "spec.template.spec.containers[0].ports[0].containerPortt"' in verdict
    )


# --- install, pipeline, upgrade, uninstall ---------------------------------------------------


@dataclass
class Installed:
    """A release of the chart and a CLI pointed at its management pod."""

    release: str
    namespace: str
    kubeconfig: str
    cli_env: dict[str, str]
    values: Path

    def helm(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return _helm(*args, "-n", self.namespace, "--kubeconfig", self.kubeconfig, timeout=timeout)

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
            raise AssertionError(f"ion {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done


async def _management_pod(api: KubeApi, namespace: str, release: str) -> dict[str, Any]:
    """The release's one ready management pod (waiting for a roll-out to finish)."""
    deadline = time.monotonic() + 180
    selector = f"app.kubernetes.io/name=ion-management,app.kubernetes.io/instance={release}"
    while True:
        pods = await api.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        live = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
        ready = [
            p
            for p in live
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions") or []
            )
        ]
        if len(live) == 1 and ready:
            return ready[0]
        assert time.monotonic() < deadline, json.dumps(live, indent=1)[-4000:]
        await asyncio.sleep(1)


async def _point_cli(installed: Installed, api: KubeApi, home: Path) -> None:
    """Aim the CLI at the management pod's IP, checking the certificate against its Service
    name (this cluster has no kube-proxy), with the client certificate the hook made."""
    pod = await _management_pod(api, installed.namespace, installed.release)
    secret = await api.request(
        "GET", f"/api/v1/namespaces/{installed.namespace}/secrets/{installed.release}-client-tls"
    )
    home.mkdir(exist_ok=True)
    for key, file in (
        ("tls.crt", "client.pem"),
        ("tls.key", "client-key.pem"),
        ("ca.crt", "ca.pem"),
    ):
        (home / file).write_bytes(base64.b64decode(secret["data"][key]))
        (home / file).chmod(0o600)
    installed.cli_env.update(
        {
            "ION_HOME": str(home),
            "ION_ENDPOINT": f"{pod['status']['podIP']}:9000",
            "ION_TLS_SERVER_NAME": f"{installed.release}-management.{installed.namespace}.svc",
            "ION_CERTFILE": str(home / "client.pem"),
            "ION_KEYFILE": str(home / "client-key.pem"),
            "ION_CACERTFILE": str(home / "ca.pem"),
        }
    )


@pytest.fixture
def release_values(kube_ion: KubeIon, stack: Stack, tmp_path: Path) -> Path:
    tags = {n: kube_ion.images.tag(n) for n in ("management", "dispatcher", "handler")}
    versions = {t.rsplit(":", 1)[1] for t in tags.values()}
    assert len(versions) == 1 and all(t.startswith("localhost/ion-") for t in tags.values()), tags
    env = stack.env
    values = {
        "image": {"registry": "localhost", "tag": versions.pop(), "pullPolicy": "Never"},
        "backends": {
            "bus": env["ION_BUS__URL"],
            "blobs": env["ION_BLOBS__URL"],
            "meta": env["ION_META__URL"],
        },
        "credentials": {"existingSecret": "ion-backends"},
        "config": {
            "ION_BUS__LOCK_DURATION_SECONDS": env["ION_BUS__LOCK_DURATION_SECONDS"],
            "ION_BUS__RECEIVE_WAIT_SECONDS": env["ION_BUS__RECEIVE_WAIT_SECONDS"],
        },
        "management": {"logFormat": "text"},
        "dispatchers": {"pendingTimeoutSeconds": 60},
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture
def installed(
    kube_ion: KubeIon, kube_namespace: str, stack: Stack, release_values: Path
) -> Iterator[Installed]:
    found = Installed(
        release="ion",
        namespace=kube_namespace,
        kubeconfig=str(kube_ion.cluster.kubeconfig),
        cli_env={k: v for k, v in __import__("os").environ.items() if not k.startswith("ION_")},
        values=release_values,
    )
    yield found
    # a failed test must not leave a release behind in the shared cluster
    _helm(
        "uninstall", found.release, "-n", kube_namespace, "--kubeconfig", found.kubeconfig,
        "--ignore-not-found", "--wait", "--timeout", "120s",
        check=False, timeout=180,
    )  # fmt: skip


def _create_modules(installed: Installed, kube_ion: KubeIon) -> list[str]:
    names = []
    for module in example_pipeline().modules:
        installed.ion(
            "module", "create", "-n", module.name, "-i", module.subscribes_to,
            "-o", ",".join(module.publishes), "-m", kube_ion.images.tag(f"example-{module.name}"),
            "--image-pull-policy", "Never",
        )  # fmt: skip
        names.append(module.name)
    return names


async def _run_flow(
    installed: Installed, stack: Stack, api: KubeApi, names: list[str], *, count: int, seed: int
) -> None:
    """Raise the example's root event; the flow must succeed through every module, each
    output in the blob store, each attempt run as one Job labelled the 2018 way."""
    raised = installed.ion(
        "event", "create", "--type", "media.submitted",
        "--data", f"count={count}", "--data", f"seed={seed}",
    )  # fmt: skip
    correlation_id = raised.stderr.rsplit("ion trace flow -c ", 1)[1].split()[0]
    flow = await wait_flow(stack.settings, correlation_id, timeout=420)
    if not flow.succeeded:  # what the bus and the dispatchers say, for whoever reads the failure
        try:
            diagnosis = await _diagnose(stack, api, installed.namespace)
        except Exception as err:  # never hide the failure behind the diagnosis's own
            diagnosis = f"(no diagnosis: {err!r})"
        raise AssertionError(f"{flow.model_dump_json(indent=2)}\n{diagnosis}")
    runs = {r.module: r for r in flow.runs()}
    assert set(runs) == set(names)
    async with ControlPlane(stack.settings) as platform:
        for run in runs.values():
            assert run.outputs, run.module
            for key in run.outputs:
                assert (await platform.blobs.stat(key)).size > 0
    jobs = await api.request("GET", f"/apis/batch/v1/namespaces/{installed.namespace}/jobs")
    labelled = [  # those not yet cleaned up
        j["metadata"]["labels"]
        for j in jobs["items"]
        if j["metadata"].get("annotations", {}).get("ion/correlationid") == correlation_id
    ]
    assert {lab["ion/modulename"] for lab in labelled} <= set(names)
    assert all("ion/eventid" in lab for lab in labelled)


async def _diagnose(stack: Stack, api: KubeApi, namespace: str) -> str:
    """Each module's subscription counts and its dispatcher pods' last log lines (best effort:
    a flow that never ran once left nothing else to go by)."""
    lines: list[str] = []
    async with ControlPlane(stack.settings) as platform:
        for record in await platform.meta.list_modules():
            spec = record.spec
            subscription = naming.subscription_name(spec.subscribes_to, spec.name)
            try:
                counts = await platform.bus.counts(spec.subscribes_to, subscription)
                lines.append(f"subscription {subscription}: {counts}")
            except Exception as err:  # diagnosis only: say what failed and go on
                lines.append(f"subscription {subscription}: {err!r}")
    pods = await api.request("GET", f"/api/v1/namespaces/{namespace}/pods")
    for pod in pods.get("items") or []:
        name = pod["metadata"]["name"]
        try:
            text = await api.text(
                f"/api/v1/namespaces/{namespace}/pods/{name}/log", params={"tailLines": "30"}
            )
        except Exception as err:  # diagnosis only
            text = repr(err)
        lines.append(f"----- pod {name} ({(pod.get('status') or {}).get('phase')}) -----\n{text}")
    return "\n".join(lines)


async def _wait_dispatchers(api: KubeApi, namespace: str, names: list[str]) -> dict[str, str]:
    """Wait until each module's dispatcher Deployment is available; their uids by module."""
    deadline = time.monotonic() + 300
    while True:
        listing = await api.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments")
        ready = {
            d["metadata"]["name"].removeprefix("ion-dispatcher-"): d["metadata"]["uid"]
            for d in listing["items"]
            if d["metadata"]["name"].startswith("ion-dispatcher-")
            and (d.get("status") or {}).get("availableReplicas")
        }
        if set(names) <= set(ready):
            return ready
        assert time.monotonic() < deadline, f"dispatchers not available: {sorted(ready)}"
        await asyncio.sleep(1)


@pytest.mark.timeout(1200)
async def test_helm_install_runs_the_pipeline_upgrade_keeps_modules_uninstall_leaves_nothing(
    kube_ion: KubeIon, stack: Stack, installed: Installed, tmp_path: Path
) -> None:
    names = [m.name for m in example_pipeline().modules]
    kube_ion.ensure("management", "dispatcher", *(f"example-{n}" for n in names))
    api = await KubeApi.connect(kubeconfig=installed.kubeconfig)
    try:
        ns = installed.namespace
        await create_backends_secret(api, ns, stack.backend_secrets)
        started = time.monotonic()
        installed.helm(
            "install", installed.release, str(CHART), "-f", str(installed.values),
            "--wait", "--timeout", "300s",
        )  # fmt: skip
        print(f"helm install --wait: {time.monotonic() - started:.1f} s")
        notes = installed.helm("get", "notes", installed.release).stdout
        assert f"get secret {installed.release}-client-tls" in notes

        await _point_cli(installed, api, tmp_path / "cli")
        assert _create_modules(installed, kube_ion) == names
        before = await _wait_dispatchers(api, ns, names)
        # the chart's shared account: management made no per-module RBAC
        objects = await ion_objects(api, ns)
        assert not [r for r in objects["roles"] if r.startswith("ion-dispatcher-")]
        await _run_flow(installed, stack, api, names, count=4, seed=3)

        # an upgrade changes a value: management rolls, every module stays and still runs
        old_pod = (await _management_pod(api, ns, installed.release))["metadata"]["uid"]
        installed.helm(
            "upgrade", installed.release, str(CHART), "--reuse-values",
            "--set", "management.logLevel=DEBUG", "--wait", "--timeout", "300s",
        )  # fmt: skip
        new_pod = await _management_pod(api, ns, installed.release)
        assert new_pod["metadata"]["uid"] != old_pod
        settings = await api.request(
            "GET", f"/api/v1/namespaces/{ns}/configmaps/{installed.release}-management"
        )
        assert settings["data"]["ION_TELEMETRY__LOG_LEVEL"] == "DEBUG"
        await _point_cli(installed, api, tmp_path / "cli")
        listed = json.loads(installed.ion("module", "list", "-o", "json").stdout)
        assert sorted(m["name"] for m in listed) == sorted(names)
        assert await _wait_dispatchers(api, ns, names) == before  # not re-created
        await _run_flow(installed, stack, api, names, count=2, seed=5)

        # deleting a module removes its dispatcher objects and Jobs; the rest stay for uninstall
        gone = names[0]
        installed.ion("module", "delete", "-n", gone)
        deadline = time.monotonic() + 120
        while True:
            left = [
                n
                for kind in ("deployments", "configmaps", "jobs")
                for n in (await ion_objects(api, ns))[kind]
                if n == f"ion-dispatcher-{gone}" or n.startswith(f"{gone}-")
            ]
            if not left:
                break
            assert time.monotonic() < deadline, f"left behind after module delete: {left}"
            await asyncio.sleep(1)

        # uninstall: the pre-delete hook removes the other modules' objects, helm the rest
        installed.helm("uninstall", installed.release, "--wait", "--timeout", "120s")
        deadline = time.monotonic() + 120
        while True:
            left = {k: v for k, v in (await ion_objects(api, ns)).items() if v}
            secrets = await api.request("GET", f"/api/v1/namespaces/{ns}/secrets")
            left_secrets = [
                s["metadata"]["name"]
                for s in secrets["items"]
                if s["metadata"]["name"] != "ion-backends"  # the test's own
            ]
            if not left and not left_secrets:
                break
            assert time.monotonic() < deadline, (left, left_secrets)
            await asyncio.sleep(1)
    finally:
        await api.aclose()
