"""Module specs and pipeline files, validated so that a bad spec is refused with field and rule.

A module's name becomes part of Kubernetes object names, bus subscription names and blob paths,
so names are restricted to what all of those accept. Event types become bus topic names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from ion.core import errors, identifiers
from ion.core.identifiers import EVENT_TYPE_RULE, is_event_type

MODULE_NAME_RULE = (
    "lowercase letters, digits and '-', starting with a letter, at most 40 characters"
)
_MODULE_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_T = TypeVar("_T")

ModuleNameStr = Annotated[str, StringConstraints(strip_whitespace=True)]


def check_module_name(name: str) -> str:
    """Return `name` if it is a valid module name, else raise ValueError naming the rule."""
    if not _MODULE_NAME.match(name) or "--" in name:
        raise ValueError(f"{name!r} is not a valid module name: use {MODULE_NAME_RULE}")
    return name


PULL_POLICIES = ("Always", "IfNotPresent", "Never")
"""Kubernetes' image pull policies, as Kubernetes spells them."""
INVALID_PULL_POLICY = "InvalidPullPolicy"
EMPTY_KEY_NEEDS_EXISTS = "EmptyKeyNeedsExists"
EXISTS_TAKES_NO_VALUE = "ExistsTakesNoValue"
SECONDS_NEED_NO_EXECUTE = "SecondsNeedNoExecute"
MAX_SCHEDULING_ITEMS = 100
"""Node selector labels, tolerations, secrets and image pull secrets of one module, each."""


class _RuleError(ValueError):
    """A broken rule with a stable name; `_first_error` reports `rule` instead of `value_error`."""

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


def _kubernetes(check: Callable[..., _T], value: object, *, field: str, **options: bool) -> _T:
    """Run an `identifiers.check_*` rule inside a pydantic validator, keeping its rule name."""
    try:
        return check(value, field=field, **options)
    except errors.ValidationError as err:
        raise _RuleError(str(err).removeprefix(f"{field}: "), rule=err.rule) from err


def check_event_type(event_type: str) -> str:
    """Return `event_type` if it is a valid event type, else raise ValueError naming the rule."""
    if not is_event_type(event_type):
        raise ValueError(f"{event_type!r} is not a valid event type: use {EVENT_TYPE_RULE}")
    return event_type


class Resources(BaseModel):
    """What one job of a module asks of its execution environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: str = ""
    """CPU request as Kubernetes writes it (`500m`, `2`); empty: the environment's default."""
    memory: str = ""
    """Memory request as Kubernetes writes it (`512Mi`); empty: the environment's default."""
    gpu: int = Field(default=0, ge=0, le=16)
    """Number of GPUs."""


MAX_ROUTES = 32
"""Routes of one module."""
UNREACHABLE_ROUTE = "UnreachableRoute"
INVALID_EXECUTOR_NAME = "InvalidExecutorName"
EXECUTOR_NAME_RULE = (
    "lowercase letters, digits and '-', starting with a letter, at most 40 characters"
)


def _rule_text(value: str) -> str:
    """Return `value` (stripped) if it is empty or a rule that compiles, else a rule error."""
    text = value.strip()
    if not text:
        return ""
    from ion.core import rules  # lark only where rules are given: a job's handler never is

    try:
        return rules.check_rule(text)
    except rules.RuleError as err:
        raise _RuleError(str(err).removeprefix("when: "), rule=err.rule) from err


class RouteResources(BaseModel):
    """What a route asks for instead of the module's `resources`: only the fields it sets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: str = ""
    """CPU request as Kubernetes writes it (`500m`); empty: the module's."""
    memory: str = ""
    """Memory request as Kubernetes writes it (`2Gi`); empty: the module's."""
    gpu: int | None = Field(default=None, ge=0, le=16)
    """Number of GPUs; none: the module's."""

    def over(self, resources: Resources) -> Resources:
        """Return `resources` with this route's fields in place of the module's."""
        return Resources(
            cpu=self.cpu or resources.cpu,
            memory=self.memory or resources.memory,
            gpu=resources.gpu if self.gpu is None else self.gpu,
        )


class Route(BaseModel):
    """Where an event that matches `when` runs: an executor by name, and its resources.

    A module's routes are tried in order and the first match wins; a route without `when`
    matches every event, so it can only be the last (the default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    when: str = ""
    """A rule over the event (docs/choosing-where-jobs-run.md); empty: every event."""
    executor: str
    """The executor's name as the dispatcher knows it: `local`, `kubernetes`, `azurebatch`..."""
    resources: RouteResources = Field(default_factory=RouteResources)

    @field_validator("when")
    @classmethod
    def _valid_when(cls, value: str) -> str:
        return _rule_text(value)

    @field_validator("executor")
    @classmethod
    def _valid_executor(cls, value: str) -> str:
        name = value.strip().lower()
        if not _MODULE_NAME.match(name) or "--" in name:
            raise _RuleError(
                f"{identifiers.shown(value)} is not an executor name: use {EXECUTOR_NAME_RULE}",
                rule=INVALID_EXECUTOR_NAME,
            )
        return name


class Toleration(BaseModel):
    """A Kubernetes toleration: lets a module's jobs run on nodes with a matching taint.

    The rules are Kubernetes' own: an empty key (any taint) needs operator `Exists`; `Exists`
    takes no value; `toleration_seconds` only goes with effect `NoExecute`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = ""
    """Taint key, a Kubernetes qualified name; empty matches every key (with `Exists`)."""
    operator: Literal["Equal", "Exists"] = Field(default="Equal", validate_default=True)
    """`Equal`: the taint's value must be `value`; `Exists`: any value."""
    value: str = Field(default="", validate_default=True)
    """Taint value to match with `Equal` (a label value); empty with `Exists`."""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    """Taint effect to match; empty matches every effect."""
    toleration_seconds: int | None = Field(default=None, ge=0, validate_default=True)
    """With `NoExecute`: how long a running job stays on a node after the taint appears."""

    @field_validator("key")
    @classmethod
    def _valid_key(cls, value: str) -> str:
        return _kubernetes(identifiers.check_qualified_name, value, field="key", allow_empty=True)

    @field_validator("operator")
    @classmethod
    def _exists_for_any_key(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("key") == "" and value != "Exists":
            raise _RuleError(
                "operator must be 'Exists' when the key is empty (a toleration of every taint)",
                rule=EMPTY_KEY_NEEDS_EXISTS,
            )
        return value

    @field_validator("value")
    @classmethod
    def _no_value_with_exists(cls, value: str, info: ValidationInfo) -> str:
        if value and info.data.get("operator") == "Exists":
            raise _RuleError(
                f"value {identifiers.shown(value)} must be empty when the operator is 'Exists'",
                rule=EXISTS_TAKES_NO_VALUE,
            )
        return _kubernetes(identifiers.check_label_value, value, field="value")

    @field_validator("toleration_seconds")
    @classmethod
    def _seconds_with_no_execute(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("effect", "NoExecute") != "NoExecute":
            raise _RuleError(
                "toleration_seconds is only allowed with effect 'NoExecute'",
                rule=SECONDS_NEED_NO_EXECUTE,
            )
        return value


class ModuleSpec(BaseModel):
    """One module: what it subscribes to, what it publishes, how to run it and its limits."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str
    """Module name: lowercase letters, digits and '-', at most 40 characters."""
    subscribes_to: str
    """The event type that triggers the module."""
    publishes: list[str] = Field(default_factory=list)
    """Event types the module may raise (an event file of another type fails the commit)."""
    command: list[str] = Field(default_factory=list)
    """argv of a local module; relative paths resolve against the pipeline file's directory."""
    image: str = Field(default="", validate_default=True)
    """Container image, for container runtimes and Kubernetes."""
    env: dict[str, str] = Field(default_factory=dict)
    """Module configuration, given to the module as environment variables."""
    secret_env: dict[str, str] = Field(default_factory=dict, alias="secretEnv")
    """Environment variables whose values are given to the module like `env` but never shown
    (`module get/list` print `***`); a key may not be in both."""
    retry_count: int = Field(default=1, ge=0, le=100)
    """How many times a failed attempt is retried before the event is dead-lettered."""
    retry_backoff_seconds: float = Field(default=1.0, ge=0, le=3600)
    """Delay before the first retry; each further retry doubles it."""
    max_execution_seconds: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    """A running attempt is killed after this long and counts as failed."""
    resources: Resources = Field(default_factory=Resources)
    instance_count: int = Field(default=1, ge=1, le=1000)
    """Dispatcher replicas (competing consumers of the module's subscription)."""
    max_in_flight: int = Field(default=4, ge=1, le=10000)
    """Jobs one dispatcher runs at once."""
    working_dir: str = ""
    """Directory the command runs in; by default the pipeline file's directory."""
    handler_image: str = ""
    """Image of the handler (prepare and commit) in this module's container jobs (2018's
    `--handler-image`); empty: the executor's default."""
    image_pull_policy: str = ""
    """`Always`, `IfNotPresent` or `Never` (any case, stored as Kubernetes spells it); empty:
    Kubernetes' default."""
    node_selector: dict[str, str] = Field(default_factory=dict, max_length=MAX_SCHEDULING_ITEMS)
    """Node labels a job's node must carry (Kubernetes `nodeSelector`)."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=MAX_SCHEDULING_ITEMS)
    """Taints of nodes a job may run on anyway (Kubernetes `tolerations`)."""
    service_account: str = ""
    """Kubernetes service account a job runs as (a DNS-1123 subdomain); empty: the default."""
    secrets: list[str] = Field(default_factory=list, max_length=MAX_SCHEDULING_ITEMS)
    """Names of Kubernetes Secrets whose keys reach the module as environment variables (names
    only: values never pass through Ion)."""
    image_pull_secrets: list[str] = Field(default_factory=list, max_length=MAX_SCHEDULING_ITEMS)
    """Names of Kubernetes Secrets used to pull the module's and the handler's images."""
    when: str = ""
    """A rule over the event; an event it does not match is recorded as filtered and never run.
    Empty: every event runs."""
    routes: list[Route] = Field(default_factory=list, max_length=MAX_ROUTES)
    """Where each event runs: the first route whose `when` matches picks the executor and
    resources; none matching (or none given): the dispatcher's own executor."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_module_name(value)

    @field_validator("subscribes_to")
    @classmethod
    def _valid_subscription(cls, value: str) -> str:
        return check_event_type(value)

    @field_validator("publishes")
    @classmethod
    def _valid_publications(cls, value: list[str]) -> list[str]:
        for event_type in value:
            check_event_type(event_type)
        if len(set(value)) != len(value):
            raise ValueError("an event type is listed twice")
        return value

    @field_validator("env", "secret_env")
    @classmethod
    def _valid_env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_NAME.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_not_plain(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        both = sorted(set(value) & set(info.data.get("env") or {}))
        if both:
            raise ValueError(f"{both[0]!r} is given both as env and as secret env; give it once")
        return value

    @property
    def environment(self) -> dict[str, str]:
        """Every variable the module's jobs get: `env` and `secret_env` together."""
        return {**self.env, **self.secret_env}

    @field_validator("image")
    @classmethod
    def _runnable(cls, value: str, info: ValidationInfo) -> str:
        # Checked on `image` (validated after `command`) so the error names a field.
        if not value and not info.data.get("command"):
            raise ValueError("a module needs a command (local) or an image (container)")
        return _kubernetes(
            identifiers.check_image_reference, value, field="image", allow_empty=True
        )

    @field_validator("handler_image")
    @classmethod
    def _valid_handler_image(cls, value: str) -> str:
        return _kubernetes(
            identifiers.check_image_reference, value, field="handler_image", allow_empty=True
        )

    @field_validator("image_pull_policy")
    @classmethod
    def _valid_pull_policy(cls, value: str) -> str:
        if not value:
            return value
        for policy in PULL_POLICIES:
            if value.lower() == policy.lower():
                return policy
        raise _RuleError(
            f"{identifiers.shown(value)} is not an image pull policy: use one of"
            f" {', '.join(PULL_POLICIES)} (or leave it empty)",
            rule=INVALID_PULL_POLICY,
        )

    @field_validator("node_selector")
    @classmethod
    def _valid_node_selector(cls, value: dict[str, str]) -> dict[str, str]:
        return _kubernetes(identifiers.check_labels, value, field="node_selector")

    @field_validator("service_account")
    @classmethod
    def _valid_service_account(cls, value: str) -> str:
        return _kubernetes(
            identifiers.check_dns_subdomain, value, field="service_account", allow_empty=True
        )

    @field_validator("secrets", "image_pull_secrets")
    @classmethod
    def _valid_secret_names(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return _kubernetes(
            identifiers.check_dns_subdomains, value, field=info.field_name or "secrets"
        )

    @field_validator("when")
    @classmethod
    def _valid_when(cls, value: str) -> str:
        return _rule_text(value)

    @field_validator("routes")
    @classmethod
    def _reachable_routes(cls, value: list[Route]) -> list[Route]:
        for i, route in enumerate(value[:-1]):
            if not route.when:
                raise _RuleError(
                    f"route {i} has no 'when', so it takes every event and the routes after it"
                    " can never match: give it a 'when' or make it the last route",
                    rule=UNREACHABLE_ROUTE,
                )
        return value

    @property
    def has_rules(self) -> bool:
        """The module filters or routes its events."""
        return bool(self.when or self.routes)

    def without_rules(self) -> ModuleSpec:
        """The spec a job is given: its rules were applied by the dispatcher already."""
        return self.model_copy(update={"when": "", "routes": []}) if self.has_rules else self

    @property
    def retry_backoff(self) -> timedelta:
        """Delay before the first retry."""
        return timedelta(seconds=self.retry_backoff_seconds)

    @property
    def max_execution(self) -> timedelta:
        """Deadline of one attempt."""
        return timedelta(seconds=self.max_execution_seconds)

    @property
    def max_attempts(self) -> int:
        """Attempts in all: the first one plus the retries."""
        return self.retry_count + 1

    def backoff_before(self, attempt: int) -> timedelta:
        """Return the delay before `attempt` (2 is the first retry): backoff * 2**(attempt-2)."""
        if attempt <= 1:
            return timedelta(0)
        return timedelta(seconds=self.retry_backoff_seconds * (2 ** (attempt - 2)))

    @classmethod
    def parse(cls, raw: Any) -> ModuleSpec:
        """Validate raw data into a spec.

        Raises:
            errors.ValidationError: with `.field` and `.rule` of the first broken rule.
        """
        try:
            return cls.model_validate(raw)
        except PydanticValidationError as err:
            raise _first_error("module spec", err) from err


class PipelineSpec(BaseModel):
    """A pipeline file: modules that together form a tree of work, and its root event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    root_event: str
    root_data: dict[str, str] = Field(default_factory=dict)
    modules: list[ModuleSpec]
    base_dir: Path = Path(".")
    """Directory relative commands resolve against (the pipeline file's directory)."""

    @field_validator("root_event")
    @classmethod
    def _valid_root(cls, value: str) -> str:
        return check_event_type(value)

    @field_validator("modules")
    @classmethod
    def _unique_names(cls, value: list[ModuleSpec]) -> list[ModuleSpec]:
        names = [m.name for m in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"module names must be unique; repeated: {', '.join(dupes)}")
        if not value:
            raise ValueError("a pipeline needs at least one module")
        return value

    @classmethod
    def load(cls, path: Path) -> PipelineSpec:
        """Read and validate a pipeline YAML file.

        Raises:
            errors.ValidationError: the file is not valid YAML or breaks a rule (field named).
            errors.NotFoundError: the file does not exist.
        """
        try:
            text = path.read_text()
        except FileNotFoundError as err:
            raise errors.NotFoundError(f"pipeline file {str(path)!r} does not exist") from err
        import yaml  # only for pipeline files: the handler's cold start never parses one

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise errors.ValidationError(
                f"pipeline file {str(path)!r} is not valid YAML: {err}", rule="yaml"
            ) from err
        if not isinstance(raw, dict):
            raise errors.ValidationError(
                f"pipeline file {str(path)!r} must be a mapping with 'name' and 'modules'",
                rule="type",
            )
        raw.setdefault("base_dir", str(path.resolve().parent))
        try:
            return cls.model_validate(raw)
        except PydanticValidationError as err:
            raise _first_error(f"pipeline file {str(path)!r}", err) from err


def _first_error(what: str, err: PydanticValidationError) -> errors.ValidationError:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    cause = first.get("ctx", {}).get("error")
    rule = cause.rule if isinstance(cause, _RuleError) else str(first["type"])
    return errors.ValidationError(f"{what}: field {field!r}: {message}", field=field, rule=rule)
