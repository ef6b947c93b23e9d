"""deployment/terraform checked with the real azurerm provider, offline.

The provider is built from the Go module proxy by tools/deploy-bins/build.sh and installed from a
local filesystem mirror (no registry). The configuration is copied without its lock file (a lock
file records the hash of one particular build), the mTLS material is made as the README says
(`ion certs generate`), and `terraform plan` runs against tests/deploy/fake_azure.py, a loopback
stand-in for the cloud metadata and token endpoints, so the plan JSON can be asserted on. What the
plan promises is compared with what Ion's code expects: the Cosmos containers and partition keys
of its metadata store, the service accounts its Kubernetes deployer and executor use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from ion.core.backends.azure import cosmos
from ion.core.config import load_settings
from tests.deploy.fake_azure import FakeAzureCloud
from tests.deploy.tools import REPO, DeployTools, require_deploy_tools
from tests.kube import schema

SOURCE = REPO / "deployment" / "terraform"
TFVARS_EXAMPLE = SOURCE / "terraform.tfvars.example"
WORKLOAD_AUDIENCE = ["api://AzureADTokenExchange"]


@dataclass(frozen=True, slots=True)
class Workdir:
    """An initialised, lock-file-free copy of deployment/terraform."""

    path: Path
    tools: DeployTools
    init_output: str

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment of a terraform command: the mirror config, no prompts, no checkpoint."""
        assert self.tools.terraformrc is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ARM_"))}
        env |= {
            "TF_CLI_CONFIG_FILE": str(self.tools.terraformrc),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
        return env | dict(extra or {})

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run terraform with `args` in the copy (or `cwd`); never raises on a non-zero exit."""
        assert self.tools.terraform is not None
        return subprocess.run(
            [str(self.tools.terraform), *args],
            cwd=cwd or self.path,
            env=self.env(extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _copy_config(destination: Path) -> Path:
    """Copy the configuration's own files (no lock file, state, tfvars, .terraform or certs)."""
    shutil.copytree(
        SOURCE,
        destination,
        ignore=shutil.ignore_patterns(
            ".terraform",
            ".terraform.lock.hcl",
            "*.tfstate*",
            "terraform.tfvars",
            "certs",
            "*.tfplan",
        ),
    )
    return destination


def _tfvars(name: str) -> str:
    """A string variable's value in terraform.tfvars.example (a plain `name = "value"` line)."""
    found = re.search(rf'^{name}\s*=\s*"([^"]*)"', TFVARS_EXAMPLE.read_text(), re.MULTILINE)
    assert found, f"terraform.tfvars.example sets no {name}"
    return found.group(1)


def _ion_cli() -> str:
    """The `ion` command of this environment (the venv's)."""
    beside = Path(sys.executable).parent / "ion"
    found = str(beside) if beside.exists() else shutil.which("ion")
    assert found, "the ion CLI is not installed in this environment"
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    """The copy, initialised from the local mirror, with certificates for the example's FQDN."""
    tools = require_deploy_tools("terraform", "terraformrc")
    path = _copy_config(tmp_path_factory.mktemp("tf") / "terraform")
    assert not (path / ".terraform.lock.hcl").exists()
    fqdn = f"{_tfvars('prefix')}-ion.{_tfvars('location')}.cloudapp.azure.com"
    # docs/deploying-to-azure.md, step 1, as written there.
    certs = subprocess.run(
        [_ion_cli(), "certs", "generate", "--dir", "certs", "--host", fqdn],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert certs.returncode == 0, certs.stderr
    shutil.copy(TFVARS_EXAMPLE, path / "terraform.tfvars")
    wd = Workdir(path, tools, "")
    init = wd.run("init", "-input=false", "-no-color")
    assert init.returncode == 0, f"terraform init failed:\n{init.stdout}\n{init.stderr}"
    return Workdir(path, tools, init.stdout)


@pytest.fixture(scope="module")
def fake_azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAzureCloud]:
    """The loopback metadata and token server."""
    with FakeAzureCloud(tmp_path_factory.mktemp("fake-azure")) as cloud:
        yield cloud


@dataclass(frozen=True, slots=True)
class Plan:
    """`terraform show -json` of a saved plan, with helpers over its resource changes."""

    data: dict[str, Any]

    def changes(self, resource_type: str) -> list[dict[str, Any]]:
        """The resource changes of one type."""
        return [c for c in self.data["resource_changes"] if c["type"] == resource_type]

    def after(self, address: str) -> dict[str, Any]:
        """The planned attributes of one resource, by address."""
        for change in self.data["resource_changes"]:
            if change["address"] == address:
                after: dict[str, Any] = change["change"]["after"]
                return after
        raise AssertionError(f"{address} is not in the plan")

    def output(self, name: str) -> dict[str, Any]:
        """A planned output: {"sensitive": bool, "value": ...} (value absent while unknown)."""
        outputs: dict[str, dict[str, Any]] = self.data["planned_values"]["outputs"]
        return outputs[name]


@pytest.fixture(scope="module")
def plan(workdir: Workdir, fake_azure: FakeAzureCloud) -> Plan:
    """Plan the example deployment against the fake cloud and read the plan as JSON."""
    planned = workdir.run(
        "plan",
        "-input=false",
        "-lock=false",
        "-no-color",
        "-out=ion.tfplan",
        extra_env=fake_azure.environ(),
    )
    assert planned.returncode == 0, f"terraform plan failed:\n{planned.stdout}\n{planned.stderr}"
    assert re.search(r"Plan: \d+ to add, 0 to change, 0 to destroy", planned.stdout)
    shown = workdir.run("show", "-json", "-no-color", "ion.tfplan")
    assert shown.returncode == 0, shown.stderr
    return Plan(json.loads(shown.stdout))


# -- fmt, init, validate ------------------------------------------------------------------------


def test_fmt_check_passes() -> None:
    tools = require_deploy_tools("terraform")
    assert tools.terraform is not None
    done = subprocess.run(
        [str(tools.terraform), "fmt", "-check", "-recursive", "-diff", "-no-color"],
        cwd=SOURCE,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"terraform fmt would change these files:\n{done.stdout}"


def test_init_installs_azurerm_from_the_local_mirror(workdir: Workdir) -> None:
    assert re.search(
        r"Installed hashicorp/azurerm v5\.2\.0 \(unauthenticated\)", workdir.init_output
    )
    lock = (workdir.path / ".terraform.lock.hcl").read_text()
    assert 'version     = "5.2.0"' in lock
    # Only the pinned provider (under the default registry host): no random, tls, azapi, helm
    # or kubernetes provider.
    (provider,) = re.findall(r'provider "([^"]+)"', lock)
    host, _, name = provider.partition("/")
    assert name == "hashicorp/azurerm" and "." in host


def test_validate_passes(workdir: Workdir) -> None:
    done = workdir.run("validate", "-json", "-no-color")
    result = json.loads(done.stdout)
    assert result["valid"] is True, json.dumps(result["diagnostics"], indent=1)
    assert result["error_count"] == 0


@pytest.mark.parametrize(
    ("file", "good", "bad", "named"),
    [
        # a misspelt argument
        (
            "aks.tf",
            "workload_identity_enabled = true",
            "workload_identity_enabeld = true",
            "workload_identity_enabeld",
        ),
        # a misspelt exported attribute
        (
            "identity.tf",
            "azurerm_kubernetes_cluster.ion.oidc_issuer_url",
            "azurerm_kubernetes_cluster.ion.oidc_issuer_uri",
            "oidc_issuer_uri",
        ),
        # a value of the wrong type
        (
            "aks.tf",
            "oidc_issuer_enabled       = true",
            'oidc_issuer_enabled       = "yes"',
            "oidc_issuer_enabled",
        ),
        # a value the provider does not accept
        (
            "backends.tf",
            'sku                 = "Standard"',
            'sku                 = "Gold"',
            "Gold",
        ),
    ],
)
def test_validate_rejects_a_planted_mistake(
    workdir: Workdir, tmp_path: Path, file: str, good: str, bad: str, named: str
) -> None:
    copy = tmp_path / "broken"
    shutil.copytree(workdir.path, copy, symlinks=True)
    text = (copy / file).read_text()
    assert good in text, f"{file} no longer contains {good!r}: update this test"
    (copy / file).write_text(text.replace(good, bad, 1))
    done = workdir.run("validate", "-json", "-no-color", cwd=copy)
    result = json.loads(done.stdout)
    assert done.returncode != 0 and result["valid"] is False
    errors = [d for d in result["diagnostics"] if d["severity"] == "error"]
    assert errors, result
    # The error names the mistake and points at the file it is in.
    assert any(
        named in f"{d['summary']} {d.get('detail', '')} {d.get('snippet', {}).get('code', '')}"
        and d.get("range", {}).get("filename") == file
        for d in errors
    ), json.dumps(errors, indent=1)


# -- plan ---------------------------------------------------------------------------------------


def test_plan_is_offline_two_requests_only(plan: Plan, fake_azure: FakeAzureCloud) -> None:
    """The provider asked for the cloud's endpoints and a token, and for nothing else."""
    assert plan.data["resource_changes"]
    unanswered = [r for r in fake_azure.requests if not r.answered]
    assert not unanswered, unanswered
    assert {(r.method, r.path) for r in fake_azure.requests} == {
        ("GET", "/metadata/endpoints"),
        ("POST", f"/{fake_azure.environ()['ARM_TENANT_ID']}/oauth2/v2.0/token"),
    }


def test_aks_has_oidc_issuer_and_workload_identity(plan: Plan) -> None:
    aks = plan.after("azurerm_kubernetes_cluster.ion")
    assert aks["oidc_issuer_enabled"] is True
    assert aks["workload_identity_enabled"] is True
    assert aks["node_provisioning_profile"][0]["mode"] == "Manual"
    assert aks["network_profile"][0]["network_policy"], "the chart's NetworkPolicy needs an engine"


def test_cosmos_containers_are_the_ones_ion_opens(plan: Plan) -> None:
    containers = {
        c["change"]["after"]["name"]: c["change"]["after"]["partition_key_paths"]
        for c in plan.changes("azurerm_cosmosdb_sql_container")
    }
    # ion.core.backends.azure.cosmos: documents and attempts by correlation id, modules by id.
    assert containers == {
        cosmos.DOCUMENTS: [f"/{cosmos.PARTITION_FIELD}"],
        cosmos.ATTEMPTS: [f"/{cosmos.PARTITION_FIELD}"],
        cosmos.MODULES: ["/id"],
    }
    assert containers[cosmos.DOCUMENTS] == ["/correlationId"]
    database = plan.after("azurerm_cosmosdb_sql_database.ion")["name"]
    meta_url = plan.output("ion_settings")["value"]["ION_META__URL"]
    assert meta_url.endswith(f"/{database}")


def _service_accounts_ion_uses() -> dict[str, set[str]]:
    """The subjects workload identity must trust, from the tfvars and Ion's own naming."""
    from ion.management.deployers.kubernetes import object_name

    tfvars = TFVARS_EXAMPLE.read_text()
    modules = re.search(r"^modules\s*=\s*\[([^\]]*)\]", tfvars, re.MULTILINE)
    per_module = (
        [object_name(m) for m in re.findall(r'"([^"]+)"', modules.group(1))] if modules else []
    )
    return {
        "management": {_tfvars("management_service_account")},
        "dispatcher": {_tfvars("dispatcher_service_account"), *per_module},
        "job": {_tfvars("job_service_account")},
    }


def test_federated_credentials_trust_ions_service_accounts(plan: Plan) -> None:
    namespace = _tfvars("namespace")
    expected = _service_accounts_ion_uses()
    found: dict[str, set[str]] = {}
    for change in plan.changes("azurerm_federated_identity_credential"):
        after = change["change"]["after"]
        component = change["index"].split("/", 1)[0]
        assert after["audience"] == WORKLOAD_AUDIENCE
        assert change["change"]["after_unknown"]["issuer"] is True  # the new cluster's issuer
        prefix = f"system:serviceaccount:{namespace}:"
        assert after["subject"].startswith(prefix), after["subject"]
        found.setdefault(component, set()).add(after["subject"].removeprefix(prefix))
    assert found == expected
    identities = {c["index"] for c in plan.changes("azurerm_user_assigned_identity")}
    assert identities == set(expected)


def test_role_assignments_are_least_privilege(plan: Plan) -> None:
    roles: dict[str, set[str]] = {}
    for change in plan.changes("azurerm_role_assignment"):
        after = change["change"]["after"]
        roles.setdefault(change["name"], set()).add(
            f"{change.get('index', '-')}: {after['role_definition_name']}"
        )
    assert roles == {
        "kubelet_acr_pull": {"-: AcrPull"},
        "cluster_network": {"-: Network Contributor"},
        "servicebus": {
            "management: Azure Service Bus Data Owner",
            "dispatcher: Azure Service Bus Data Owner",
            "job: Azure Service Bus Data Sender",
        },
        "blobs": {
            f"{c}: Storage Blob Data Contributor" for c in ("management", "dispatcher", "job")
        },
        "blob_delegator": {
            f"{c}: Storage Blob Delegator" for c in ("management", "dispatcher", "job")
        },
    }
    # Blob data access on Ion's container only, not the whole account.
    config = plan.data["configuration"]["root_module"]["resources"]
    blobs = next(r for r in config if r["address"] == "azurerm_role_assignment.blobs")
    assert blobs["expressions"]["scope"]["references"][-1] == "azurerm_storage_container.ion"
    # Cosmos: the built-in Data Contributor, on Ion's database.
    sql_roles = plan.changes("azurerm_cosmosdb_sql_role_assignment")
    assert {c["index"] for c in sql_roles} == {"management", "dispatcher", "job"}
    sql = next(r for r in config if r["address"] == "azurerm_cosmosdb_sql_role_assignment.ion")
    role_refs = sql["expressions"]["role_definition_id"]["references"]
    assert "local.cosmos_data_contributor" in role_refs
    assert "azurerm_cosmosdb_sql_database.ion.name" in sql["expressions"]["scope"]["references"]
    local_value = re.search(
        r'cosmos_data_contributor\s*=\s*"([^"]+)"', (SOURCE / "identity.tf").read_text()
    )
    assert local_value and local_value.group(1) == "00000000-0000-0000-0000-000000000002"


def test_no_account_keys_anywhere(plan: Plan) -> None:
    assert plan.after("azurerm_storage_account.ion")["shared_access_key_enabled"] is False
    assert plan.after("azurerm_servicebus_namespace.ion")["local_auth_enabled"] is False
    assert plan.after("azurerm_cosmosdb_account.ion")["local_authentication_enabled"] is False
    assert plan.after("azurerm_container_registry.ion")["admin_enabled"] is False
    assert plan.after("azurerm_application_insights.ion")["local_authentication_enabled"] is False
    secretish = re.compile(
        r"(access_key|_key$|connection_string|password|secret|instrumentation_key|kube_config|"
        r"kube_admin_config|primary_|secondary_)"
    )
    outputs = plan.data["configuration"]["root_module"]["outputs"]
    for name, output in outputs.items():
        refs = output["expression"].get("references", [])
        leaked = [
            r
            for r in refs
            if r.count(".") >= 2
            and secretish.search(r.rsplit(".", 1)[-1])
            and not r.endswith("primary_blob_endpoint")
        ]
        assert not leaked, f"output {name} exposes {leaked}"
    assert plan.output("ion_client_key")["sensitive"] is True


def test_outputs_are_the_2018_ones_plus_the_helm_inputs(plan: Plan, workdir: Workdir) -> None:
    outputs = plan.data["planned_values"]["outputs"]
    assert {"ion_ca", "ion_client_cert", "ion_client_key", "ion_fqdn"} <= set(outputs)
    assert plan.output("ion_ca")["value"] == (workdir.path / "certs" / "ca.pem").read_text()
    assert (
        plan.output("ion_client_cert")["value"]
        == (workdir.path / "certs" / "client.pem").read_text()
    )
    assert plan.output("ion_ca")["sensitive"] is False
    for name in ("helm_values", "identity_client_ids", "acr_login_server"):
        assert name in plan.data["output_changes"], name


def test_server_certificate_names_the_planned_fqdn(plan: Plan, workdir: Workdir) -> None:
    ip = plan.after("azurerm_public_ip.management")
    fqdn = f"{ip['domain_name_label']}.{ip['location']}.cloudapp.azure.com"
    cert = x509.load_pem_x509_certificate((workdir.path / "certs" / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert fqdn in names.get_values_for_type(x509.DNSName)


def test_ion_settings_are_accepted_by_ion(plan: Plan) -> None:
    settings_env = plan.output("ion_settings")["value"]
    settings = load_settings(environ={**settings_env, "ION_HOME": "/nonexistent"})
    bus = plan.after("azurerm_servicebus_namespace.ion")["name"]
    storage = plan.after("azurerm_storage_account.ion")["name"]
    container = plan.after("azurerm_storage_container.ion")["name"]
    account = plan.after("azurerm_cosmosdb_account.ion")["name"]
    database = plan.after("azurerm_cosmosdb_sql_database.ion")["name"]
    assert settings.bus.url == f"servicebus://{bus}"
    assert settings.blobs.url == f"azblob://{storage}/{container}"
    assert settings.meta.url == f"cosmos://{account}/{database}"


def _fill_unknowns(value: Any, unknown: Any, placeholder: Callable[[str], str], path: str) -> Any:
    """`value` with every leaf the plan does not know yet replaced by placeholder(path)."""
    if unknown is True:
        return placeholder(path)
    if isinstance(unknown, dict):
        known = value if isinstance(value, dict) else {}
        keys = set(known) | set(unknown)
        return {
            k: _fill_unknowns(known.get(k), unknown.get(k), placeholder, f"{path}.{k}")
            for k in sorted(keys)
        }
    return value


def test_helm_values_output_renders_the_chart_with_the_trusted_service_accounts(
    plan: Plan, tmp_path: Path
) -> None:
    """The chart accepts `terraform output -json helm_values` (its values schema is strict),
    and the service accounts it renders are the ones the federated credentials trust, each
    annotated with its component's identity."""
    tools = require_deploy_tools("helm")
    assert tools.helm is not None
    chart = REPO / "deployment" / "helm" / "ion"
    assert (chart / "Chart.yaml").is_file(), "deployment/helm/ion is missing"
    change = plan.data["output_changes"]["helm_values"]
    client_ids = {
        "managementClientId": "00000000-0000-0000-0000-0000000000a1",
        "dispatcherClientId": "00000000-0000-0000-0000-0000000000a2",
        "jobClientId": "00000000-0000-0000-0000-0000000000a3",
    }

    def placeholder(path: str) -> str:
        leaf = path.rsplit(".", 1)[-1]
        return client_ids.get(leaf, f"placeholder-{leaf}")

    values = _fill_unknowns(change["after"], change["after_unknown"], placeholder, "helm_values")
    values_file = tmp_path / "azure-values.json"
    values_file.write_text(json.dumps(values))
    namespace = _tfvars("namespace")
    rendered = subprocess.run(
        [
            str(tools.helm),
            "template",
            "ion",
            str(chart),
            "--namespace",
            namespace,
            "--kube-version",
            schema.KUBERNETES_VERSION.removeprefix("v"),
            "-f",
            str(values_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, f"the chart refused the values:\n{rendered.stderr}"
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    accounts = {
        d["metadata"]["name"]: d["metadata"]
        .get("annotations", {})
        .get("azure.workload.identity/client-id")
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    trusted = _service_accounts_ion_uses()
    by_component = {
        "management": "managementClientId",
        "dispatcher": "dispatcherClientId",
        "job": "jobClientId",
    }
    for component, names in trusted.items():
        for name in names:
            assert accounts.get(name) == client_ids[by_component[component]], (component, name)
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert (
        service["metadata"]["annotations"]["service.beta.kubernetes.io/azure-pip-name"]
        == (plan.after("azurerm_public_ip.management")["name"])
    )
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["port"] == 9000  # the port of ion_fqdn the CLI is given


BAD_VALUES = {
    # variable: (value, what its error message says)
    "prefix": ("Ion_Prod", "The prefix must be 3-12 lowercase letters"),
    "location": ("West Europe", "short name"),
    "node_count": ("0", "whole number from 1 to 100"),
    "modules": ('["Bad_Module"]', "Ion's module name rule"),
    "ion_ca_cert_file": ("missing/ca.pem", "ion certs generate"),
}


def test_variable_validation_rejects_bad_values(
    workdir: Workdir, fake_azure: FakeAzureCloud
) -> None:
    """One plan with every bad value: each is refused, by name, with its own message."""
    done = workdir.run(
        "plan",
        "-input=false",
        "-lock=false",
        "-no-color",
        *(f"-var={var}={value}" for var, (value, _) in BAD_VALUES.items()),
        extra_env=fake_azure.environ(),
    )
    assert done.returncode != 0
    # Terraform reports each invalid variable as its own diagnostic block.
    blocks = [" ".join(b.split()) for b in done.stderr.split("Error: ")[1:]]
    assert all("Invalid value for variable" in b for b in blocks), done.stderr
    for var, (_, message) in BAD_VALUES.items():
        assert any(f"var.{var}" in b and message in b for b in blocks), (var, done.stderr)
    assert len(blocks) == len(BAD_VALUES), done.stderr
