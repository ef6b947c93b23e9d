"""Ion's settings: one frozen object, loaded once per entry point and passed down.

Precedence: defaults < `~/.ion/config.yaml` (or `ION_CONFIG`) < `ION_*` environment variables
(nested with `__`, e.g. `ION_BUS__URL`) < flags the entry point applies with `with_overrides`.
Nothing below an entry point reads `os.environ`. The 2018 variable `HANDLER_BASE_DIR` is honoured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic import ValidationError as PydanticValidationError

from ion.core import errors


def default_home() -> Path:
    """Return Ion's home directory: `$ION_HOME`, else `~/.ion`."""
    return Path(os.environ.get("ION_HOME", "~/.ion")).expanduser()


class BusSettings(BaseModel):
    """Where events travel."""

    model_config = ConfigDict(frozen=True)

    url: str = ""
    """EventBus URL; default `sqlite:///<home>/bus.db`."""
    lock_duration_seconds: float = 30.0
    """Peek-lock duration of module subscriptions (renewed while a job runs)."""
    receive_wait_seconds: float = 1.0
    """How long one receive call waits for a message."""


class BlobSettings(BaseModel):
    """Where files are kept."""

    model_config = ConfigDict(frozen=True)

    url: str = ""
    """BlobStore URL; default `file:///<home>/blobs`."""
    sas_lifetime_hours: float = 24.0 * 7
    """Lifetime of the read-only URLs written into in/eventmeta.json."""


class MetaSettings(BaseModel):
    """Where metadata documents and records are kept."""

    model_config = ConfigDict(frozen=True)

    url: str = ""
    """MetadataStore URL; default `sqlite:///<home>/meta.db`."""


class DispatcherSettings(BaseModel):
    """How dispatchers run jobs."""

    model_config = ConfigDict(frozen=True)

    jobs_dir: str = ""
    """Directory holding one directory per job; default `<home>/jobs`."""
    shutdown_grace_seconds: float = 10.0
    """On SIGTERM, how long running jobs may finish before they are left to be adopted."""
    container_runtime: str = ""
    """`docker` or `podman` for image-only modules; empty: detect on PATH."""
    keep_job_dirs: bool = False
    """Keep each finished job's directory (for debugging); logs are stored either way."""
    executor: str = "local"
    """Where jobs run: `local` (processes on this machine), `kubernetes` (one Job each) or
    `azurebatch` (one Batch task each, settings in `azurebatch`)."""
    routes_to: str = ""
    """Comma list of further executors this dispatcher holds for modules' `routes:` (`local`,
    `kubernetes`, `azurebatch`); a route may name these or `executor`. Empty: only `executor`."""

    @property
    def executor_names(self) -> list[str]:
        """`executor` first, then each of `routes_to` once, in lowercase."""
        names = [self.executor.strip().lower() or "local"]
        for name in self.routes_to.split(","):
            name = name.strip().lower()
            if name and name not in names:
                names.append(name)
        return names

    def route_executors(self, provider: str = "") -> list[str]:
        """The executors routes of a module on `provider` may name: the provider's own executor
        (`kubernetes`, `azurebatch`; `executor` for `local` and `docker`) and `routes_to`.

        A `kubernetes` or `azurebatch` module's dispatchers hold their provider's executor in
        place of `executor` (the deployers set it), so `executor` is not among its names unless
        `routes_to` lists it too."""
        if provider not in ("kubernetes", "azurebatch"):
            return self.executor_names
        held = self.model_copy(update={"executor": provider})
        return held.executor_names


class KubernetesSettings(BaseModel):
    """How the Kubernetes executor runs jobs and where management deploys dispatchers."""

    model_config = ConfigDict(frozen=True)

    namespace: str = ""
    """Namespace of Ion's Jobs and dispatchers; empty: the pod's own in a cluster, else `default`."""
    kubeconfig: str = ""
    """Kubeconfig file; empty: the in-cluster service account, else `KUBECONFIG`/~/.kube/config."""
    context: str = ""
    """Kubeconfig context; empty: its current context."""
    handler_image: str = "localhost/ion-handler:dev"
    """Image of the prepare and commit containers, unless the module names its own."""
    dispatcher_image: str = "localhost/ion-dispatcher:dev"
    """Image of the dispatcher Deployments management creates."""
    image_pull_policy: str = "IfNotPresent"
    """Pull policy of Ion's own containers, and of module images unless the module sets one."""
    backends_secret: str = ""
    """Secret whose keys reach the handler and dispatcher containers as environment variables:
    the backends' credentials (`ION_*` settings, Azure connection strings). Never in args."""
    settings_env: dict[str, str] = Field(default_factory=dict)
    """Non-secret `ION_*` settings given to dispatcher pods as plain environment variables."""
    job_service_account: str = ""
    """Service account of job pods when the module names none; empty: the namespace default
    (its token is not mounted either way)."""
    dispatcher_service_account: str = ""
    """Service account every dispatcher Deployment runs as, made beforehand with the rights a
    dispatcher needs (the Helm chart's `ion-dispatcher`; one account that workload identity can
    federate). Empty: management creates a ServiceAccount, Role and RoleBinding per module."""
    pod_labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels on the dispatcher and job pods Ion creates (e.g.
    `azure.workload.identity/use: "true"`, which workload identity needs)."""
    ttl_seconds_after_finished: int = Field(default=600, ge=0)
    """Kubernetes deletes a finished Job after this long, if Ion has not already."""
    deadline_allowance_seconds: float = Field(default=120.0, ge=0)
    """Added to a module's max execution time for its Job's `activeDeadlineSeconds`: the time
    prepare and commit may take. The module itself is stopped at its own deadline."""
    pending_timeout_seconds: float = Field(default=120.0, gt=0)
    """A job whose pod cannot start a container this long (image pull, missing secret) fails."""
    resync_seconds: float = Field(default=60.0, gt=0)
    """The executor lists its Jobs and pods again this often, besides watching them."""
    host_path_mounts: list[str] = Field(default_factory=list)
    """Host directories mounted at the same path into handler containers: lets one-node
    development clusters share embedded (SQLite, file) backends with the host."""
    create_concurrency: int = Field(default=32, ge=1, le=1024)
    """API calls one executor makes at once."""


class AzureBatchSettings(BaseModel):
    """How the Azure Batch executor runs jobs: one Batch job per module dispatcher on a named
    pool, one task per attempt (see docs/azure-batch.md)."""

    model_config = ConfigDict(frozen=True)

    account_url: str = ""
    """The Batch account's endpoint, `https://<account>.<region>.batch.azure.com`."""
    account_name: str = ""
    """The account's name (shared-key auth signs with it); empty: the first label of the URL."""
    account_key: SecretStr = SecretStr("")
    """Shared key; empty: a token from azure-identity (managed identity, workload identity,
    `az login`: `DefaultAzureCredential`). Give it by environment or config file, never a flag."""
    managed_identity_client_id: str = ""
    """Client id of the user-assigned managed identity to use, when there are several."""
    pool_id: str = ""
    """The pool tasks run on; made beforehand (Terraform, the portal), never by Ion."""
    job_id_prefix: str = "ion"
    """Batch job ids are `<prefix>-<module>`: one job per module dispatcher."""
    handler_image: str = "localhost/ion-handler:dev"
    """Image of the prepare and commit steps, unless the module names its own."""
    default_module_image: str = ""
    """Image of modules that give only a command."""
    registry_server: str = ""
    """Registry the task logs in to before pulling (`registry.example.com`); empty: none."""
    registry_username: str = ""
    registry_password: SecretStr = SecretStr("")
    """Reaches the task as an environment setting, never its command line."""
    forward_env: list[str] = Field(
        default_factory=lambda: [
            "ION_AZURE_STORAGE_CONNECTION_STRING",
            "ION_AZURE_COSMOS_ENDPOINT",
            "ION_AZURE_COSMOS_KEY",
            "ION_AZURE_SERVICEBUS_CONNECTION_STRING",
            "ION_AZURE_CA_FILE",
            "AZURE_CLIENT_ID",
        ]
    )
    """Variables of the dispatcher's environment given to the prepare and commit steps as task
    environment settings (the backends' credentials), when set."""
    handler_env: dict[str, str] = Field(default_factory=dict)
    """Plain settings for the prepare and commit steps (no secrets: they are visible in the
    task's environment settings)."""
    docker_network: str = ""
    """`docker run --network` of the job's containers; empty: the engine's default."""
    host_path_mounts: list[str] = Field(default_factory=list)
    """Host directories mounted at the same path into the job's containers (one-machine
    development: embedded backends shared with the dispatcher)."""
    task_retention_seconds: float = Field(default=3600.0, gt=0)
    """Batch keeps a finished task's files this long unless Ion deletes the task first."""
    deadline_allowance_seconds: float = Field(default=600.0, ge=0)
    """Added to a module's max execution time for its task's max wall-clock time: the time
    pulls, prepare and commit may take. The module itself is stopped at its own deadline."""
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    """How often a running task's state is read."""
    job_delete_wait_seconds: float = Field(default=60.0, ge=0)
    """How long to wait for a Batch job that is being deleted before creating it again."""
    ca_file: str = ""
    """PEM bundle to verify the account's TLS certificate with instead of the system's."""


class HandlerSettings(BaseModel):
    """The 2018 handler settings."""

    model_config = ConfigDict(frozen=True)

    base_dir: str = "/ion"
    """The module's base directory (`HANDLER_BASE_DIR` in 2018)."""


class ManagementSettings(BaseModel):
    """The management server and its front API."""

    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = 9000
    front_api_port: int = 9001
    certfile: str = ""
    keyfile: str = ""
    cacertfile: str = ""
    insecure: bool = False
    """Serve plaintext gRPC (warns); mutual TLS otherwise."""
    providers: str = "local,docker"
    """Comma list of the providers this server runs modules on: `local` and `docker` (in this
    process), `kubernetes` (a Deployment per module, settings in `kubernetes`), `azurebatch`
    (dispatchers in this process whose jobs are Batch tasks, settings in `azurebatch`)."""
    default_provider: str = ""
    """Provider of a module whose request names none (2018's default was `kubernetes`); empty:
    the first of `providers`."""
    front_api_max_request_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Largest front API request body, all multipart parts together (413 above it)."""
    front_api_max_file_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Largest single file part of a front API upload (413 above it)."""


class TelemetrySettings(BaseModel):
    """Logs and traces."""

    model_config = ConfigDict(frozen=True)

    log_format: Literal["text", "json"] = "text"
    """`text` (one short line per record, for a terminal) or `json` (one object per line with
    the trace and span ids and Ion's context keys, for a log pipeline)."""
    log_level: str = "INFO"
    traces: Literal["auto", "none", "console", "otlp"] = "auto"
    """Where spans go: `auto` (OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else nowhere),
    `otlp`, `console` (JSON on stderr) or `none` (see `ion.core.telemetry`)."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Serve Prometheus `/metrics` on this plain-HTTP port (management and `ion-dispatcher`;
    0 picks a free one); off when unset. A dispatcher's health port serves `/metrics` too."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics port listens on (`0.0.0.0` in a pod)."""


class IonSettings(BaseModel):
    """Every setting of Ion, grouped by service.

    A plain model, not a pydantic-settings `BaseSettings`: `load_settings` reads the config
    file and the environment it is handed itself (reading `os.environ` here as well would let
    the process environment leak into settings loaded from an explicit `environ`), and
    importing pydantic-settings cost every Ion command ~0.1 s of start-up.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", validate_default=True)

    home: Path = Field(default_factory=default_home)
    """Where embedded state lives (made absolute, so URLs under it are valid)."""

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    bus: BusSettings = BusSettings()
    blobs: BlobSettings = BlobSettings()
    meta: MetaSettings = MetaSettings()
    dispatcher: DispatcherSettings = DispatcherSettings()
    handler: HandlerSettings = HandlerSettings()
    management: ManagementSettings = ManagementSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    azurebatch: AzureBatchSettings = AzureBatchSettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    @property
    def bus_url(self) -> str:
        """The EventBus URL, defaulted under home."""
        return self.bus.url or f"sqlite:///{self.home / 'bus.db'}"

    @property
    def blobs_url(self) -> str:
        """The BlobStore URL, defaulted under home."""
        return self.blobs.url or (self.home / "blobs").as_uri()

    @property
    def meta_url(self) -> str:
        """The MetadataStore URL, defaulted under home."""
        return self.meta.url or f"sqlite:///{self.home / 'meta.db'}"

    @property
    def jobs_dir(self) -> Path:
        """Directory of job directories, defaulted under home."""
        return (
            Path(self.dispatcher.jobs_dir).expanduser()
            if self.dispatcher.jobs_dir
            else self.home / "jobs"
        )

    def with_overrides(self, **groups: Mapping[str, Any]) -> IonSettings:
        """Return settings with flag values applied on top (`bus={"url": ...}`).

        Raises:
            errors.ConfigError: a value is invalid (the setting is named).
        """
        data = self.model_dump()
        for group, values in groups.items():
            current = data.get(group)
            if isinstance(current, dict):
                current.update({k: v for k, v in values.items() if v is not None})
            else:
                data[group] = values
        try:
            return IonSettings.model_validate(data)
        except PydanticValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise errors.ConfigError(f"setting {field} is invalid: {first['msg']}") from err


def load_settings(
    *, environ: Mapping[str, str] | None = None, config_file: Path | None = None
) -> IonSettings:
    """Load settings: config file (if any) under environment variables.

    Raises:
        errors.ConfigError: the config file is unreadable or a value is invalid (named).
    """
    env = dict(os.environ if environ is None else environ)
    home = Path(env.get("ION_HOME", "~/.ion")).expanduser()
    path = config_file or Path(env.get("ION_CONFIG", str(home / "config.yaml"))).expanduser()
    file_values: dict[str, Any] = {}
    if path.is_file():
        import yaml  # only with a config file: a job pod's handler starts without it

        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise errors.ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(loaded, dict):
            raise errors.ConfigError(f"config file {path} must be a mapping of setting groups")
        _check_keys(loaded, IonSettings, path=path)
        file_values = loaded
    if "HANDLER_BASE_DIR" in env and "ION_HANDLER__BASE_DIR" not in env:
        env["ION_HANDLER__BASE_DIR"] = env["HANDLER_BASE_DIR"]
    try:
        from_env = _env_only(env)
        merged = _deep_merge(file_values, from_env)
        merged.setdefault("home", str(home))
        return IonSettings.model_validate(merged)
    except PydanticValidationError as err:
        first = err.errors()[0]
        field = "__".join(str(p) for p in first["loc"]).upper()
        raise errors.ConfigError(f"setting ION_{field} is invalid: {first['msg']}") from err


def _check_keys(
    values: Mapping[Any, Any], model: type[BaseModel], *, path: Path, prefix: str = ""
) -> None:
    """Refuse a config file key no setting has (a typo would otherwise be ignored silently).

    Only the file is checked: the environment holds `ION_*` variables of other programs too.
    """
    for key, value in values.items():
        name = f"{prefix}{key}"
        field = model.model_fields.get(str(key))
        if field is None:
            known = ", ".join(sorted(model.model_fields))
            where = f"under {prefix[:-1]!r}" if prefix else "at the top level"
            raise errors.ConfigError(
                f"config file {path}: unknown key {name!r}; the keys {where} are: {known}"
                " (docs/cli.md lists the settings)"
            )
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel) and isinstance(value, dict):
            _check_keys(value, nested, path=path, prefix=f"{name}.")


def _env_only(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith("ION_") or key in ("ION_CONFIG",):
            continue
        path = key[4:].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = _decode(path, value)
    return out


def _decode(path: list[str], value: str) -> Any:
    """A dict or list setting given in the environment as JSON (`{"a": "b"}`), else the text."""
    model: type[BaseModel] = IonSettings
    for part in path[:-1]:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type):
            return value
        if not issubclass(field.annotation, BaseModel):
            return value
        model = field.annotation
    field = model.model_fields.get(path[-1])
    if field is None or get_origin(field.annotation) not in (dict, list):
        return value
    try:
        return json.loads(value)
    except ValueError as err:
        name = "ION_" + "__".join(path).upper()
        raise errors.ConfigError(
            f'setting {name} must be JSON (like {{"key": "value"}} or ["a"]): {err}'
        ) from err


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
