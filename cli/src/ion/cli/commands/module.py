"""`ion module create|delete|get|list`: modules on the management server (2018 flags kept)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import click

from ion.cli.commands._common import call, key_values, parse_dotenv
from ion.cli.main import connection_options
from ion.cli.output import as_data, console, output_option, render, render_one
from ion.proto import module_pb2
from ion.proto.v1 import types_pb2

LIST_COLUMNS = ("id", "name", "subscribes_to", "publishes", "instance_count", "status")
GET_FIELDS = (
    "name",
    "status",
    "statusMessage",
    "dispatchers_running",
    "jobs_in_flight",
    "running",
    "succeeded",
    "failed",
    "dead_lettered",
    "cancelled",
    "queued",
    "dead_letter_queue",
    "subscribes_to",
    "publishes",
    "subscription",
    "command",
    "image",
    "handler_image",
    "image_pull_policy",
    "node_selector",
    "tolerations",
    "service_account",
    "secrets",
    "image_pull_secrets",
    "when",
    "routes",
    "provider",
    "created_at",
)
TOLERATION_SYNTAX = "KEY[=VALUE][:EFFECT[:SECONDS]]"
ROUTE_SYNTAX = "EXPR => EXECUTOR[,cpu=C][,memory=M][,gpu=N]"
ROUTE_RESOURCES = ("cpu", "memory", "gpu")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


@click.group()
@connection_options
def module() -> None:
    """Create, inspect and delete modules."""


@module.command()
@connection_options
@click.option("-n", "--name", required=True, help="Module name (its id gets a suffix).")
@click.option(
    "-i", "--event-subscriptions", required=True, help="Event type the module subscribes to."
)
@click.option(
    "-o",
    "--event-publications",
    default="",
    help="Event types the module may raise, comma-separated.",
)
@click.option("-m", "--module-image", default="", help="Container image of the module.")
@click.option(
    "--command",
    default="",
    help="Command of a local module, e.g. 'python resize.py' (instead of an image).",
)
@click.option(
    "--working-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory a local command runs in [the current directory].",
)
@click.option(
    "--handler-image",
    default="",
    help="Handler image of the module's container jobs [the executor's default].",
)
@click.option(
    "--image-pull-policy",
    type=click.Choice(PULL_POLICIES, case_sensitive=False),
    default=None,
    help="When Kubernetes pulls the images [Kubernetes' default].",
)
@click.option(
    "--node-selector",
    "node_selector_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="Node label a job's node must carry (repeatable).",
)
@click.option(
    "--toleration",
    "toleration_items",
    multiple=True,
    metavar=TOLERATION_SYNTAX,
    help="Taint a job tolerates (repeatable): KEY=VALUE matches that value, KEY alone any value,"
    " KEY '*' every taint; EFFECT NoSchedule, PreferNoSchedule or NoExecute (empty: any);"
    " SECONDS only with NoExecute.",
)
@click.option("--service-account", default="", help="Kubernetes service account the jobs run as.")
@click.option(
    "--secret",
    "secret_names",
    multiple=True,
    metavar="NAME",
    help="Kubernetes Secret whose keys reach the module as environment (repeatable).",
)
@click.option(
    "--image-pull-secret",
    "image_pull_secret_names",
    multiple=True,
    metavar="NAME",
    help="Kubernetes Secret to pull the images with (repeatable).",
)
@click.option(
    "--when",
    "when",
    default="",
    metavar="EXPR",
    help="Run only events this rule matches; others are recorded as filtered"
    " (e.g. 'data.mime startswith \"video/\"'). See docs/choosing-where-jobs-run.md.",
)
@click.option(
    "--route",
    "route_items",
    multiple=True,
    metavar=ROUTE_SYNTAX,
    help="Where matching events run (repeatable, tried in order, first match wins); EXPR '*'"
    " (or empty) matches every event: the default route, last. E.g."
    " 'files.size > 1GiB => azurebatch,gpu=1'.",
)
@click.option(
    "--config-map-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Dotenv file of KEY=value settings given to the module as environment.",
)
@click.option("--env", "env_items", multiple=True, help="KEY=value for the module (repeatable).")
@click.option(
    "--secret-env",
    "secret_env_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="Environment for the module whose value is stored but never shown: `module get` and"
    " `module list` print *** (repeatable).",
)
@click.option(
    "-p",
    "--provider",
    default="",
    help="Where jobs run: local, docker, kubernetes, azurebatch [the server's default].",
)
@click.option("--instance-count", type=int, default=1, show_default=True, help="Dispatchers.")
@click.option(
    "--retry-count", type=int, default=1, show_default=True, help="Retries before dead-lettering."
)
@click.option(
    "--retry-backoff",
    type=float,
    default=None,
    help="Seconds before the first retry (doubles each retry) [1].",
)
@click.option(
    "--max-exec-mins", type=int, default=5, show_default=True, help="Minutes one attempt may run."
)
@click.option("--max-in-flight", type=int, default=0, help="Jobs per dispatcher at once [4].")
def create(
    name: str,
    event_subscriptions: str,
    event_publications: str,
    module_image: str,
    command: str,
    working_dir: Path | None,
    handler_image: str,
    image_pull_policy: str | None,
    node_selector_items: tuple[str, ...],
    toleration_items: tuple[str, ...],
    service_account: str,
    secret_names: tuple[str, ...],
    image_pull_secret_names: tuple[str, ...],
    when: str,
    route_items: tuple[str, ...],
    config_map_file: Path | None,
    env_items: tuple[str, ...],
    secret_env_items: tuple[str, ...],
    provider: str,
    instance_count: int,
    retry_count: int,
    retry_backoff: float | None,
    max_exec_mins: int,
    max_in_flight: int,
) -> None:
    """Create a module and start its dispatchers; prints `created module <id>`."""
    if not module_image and not command:
        raise click.UsageError("give the module an image (-m) or a local --command")
    argv = shlex.split(command) if command else []
    request = module_pb2.ModuleCreateRequest(
        modulename=name,
        eventsubscriptions=event_subscriptions,
        eventpublications=event_publications,
        moduleimage=module_image,
        handlerimage=handler_image,
        instancecount=instance_count,
        retrycount=retry_count,
        provider=provider,
        maxexecutiontimemins=max_exec_mins,
        configmap=parse_dotenv(config_map_file) if config_map_file else {},
        command=argv,
        env=dict(key_values(env_items, flag="--env")),
        secret_env=dict(key_values(secret_env_items, flag="--secret-env")),
        working_dir=_working_dir(working_dir, local=bool(argv) and not module_image),
        max_in_flight=max_in_flight,
        image_pull_policy=image_pull_policy or "",
        node_selector=_node_selector(node_selector_items),
        tolerations=[_toleration(item) for item in toleration_items],
        service_account=service_account,
        secrets=secret_names,
        image_pull_secrets=image_pull_secret_names,
        when=when,
        routes=[_route(item) for item in route_items],
    )
    if retry_backoff is not None:
        request.retry_backoff_seconds = retry_backoff
    reply = call(lambda client: client.create_module(request))
    click.echo(f"created module {reply.name}")


def _working_dir(given: Path | None, *, local: bool) -> str:
    """The directory to send: the one given (absolute), else the current one for a local command
    (with an image, a command runs inside it, where this machine's directories mean nothing)."""
    if given is not None:
        return str(given.resolve())
    return str(Path(os.getcwd()).resolve()) if local else ""


def _node_selector(items: tuple[str, ...]) -> dict[str, str]:
    selector: dict[str, str] = {}
    for key, value in key_values(items, flag="--node-selector"):
        if key in selector and selector[key] != value:
            raise click.BadParameter(f"{key!r} is given twice", param_hint="--node-selector")
        selector[key] = value
    return selector


def _toleration(item: str) -> types_pb2.Toleration:
    """Parse `KEY[=VALUE][:EFFECT[:SECONDS]]`; KEY `*` or empty: every taint.

    Taint keys, values and effects hold no ':' or '=', so the split is unambiguous.
    """
    head, *rest = item.split(":")
    if len(rest) > 2:
        raise click.BadParameter(
            f"{item!r} has too many ':'; use {TOLERATION_SYNTAX}", param_hint="--toleration"
        )
    key, equals, value = (part.strip() for part in head.partition("="))
    toleration = types_pb2.Toleration(
        key="" if key == "*" else key, operator="Equal" if equals else "Exists", value=value
    )
    if rest:
        effect = rest[0].strip()
        # Kubernetes' spelling whatever the case; anything else goes as given, for the server
        # to refuse naming the field.
        toleration.effect = next((e for e in EFFECTS if e.lower() == effect.lower()), effect)
    if len(rest) == 2:
        try:
            toleration.toleration_seconds = int(rest[1])
        except ValueError:
            raise click.BadParameter(
                f"{item!r}: SECONDS must be a whole number, not {rest[1]!r}",
                param_hint="--toleration",
            ) from None
    return toleration


def _route(item: str) -> types_pb2.Route:
    """Parse `EXPR => EXECUTOR[,cpu=C][,memory=M][,gpu=N]`; EXPR `*` or empty: every event.

    Split at the last `=>`: what follows holds none (executor names and resources cannot).
    The rule itself is checked by the server, which points at its column.
    """
    expr, arrow, target = item.rpartition("=>")
    if not arrow:
        raise click.BadParameter(f"{item!r} has no '=>'; use {ROUTE_SYNTAX}", param_hint="--route")
    executor, *options = (part.strip() for part in target.split(","))
    if not executor:
        raise click.BadParameter(
            f"{item!r} names no executor after '=>'; use {ROUTE_SYNTAX}", param_hint="--route"
        )
    route = types_pb2.Route(when="" if expr.strip() == "*" else expr.strip(), executor=executor)
    for option in options:
        key, equals, value = (p.strip() for p in option.partition("="))
        if not equals or key not in ROUTE_RESOURCES:
            raise click.BadParameter(
                f"{item!r}: {option!r} is not one of cpu=, memory=, gpu=; use {ROUTE_SYNTAX}",
                param_hint="--route",
            )
        if key == "gpu":
            try:
                route.gpu = int(value)
            except ValueError:
                raise click.BadParameter(
                    f"{item!r}: gpu must be a whole number, not {value!r}", param_hint="--route"
                ) from None
        else:
            setattr(route, key, value)
    return route


def _route_text(route: dict[str, Any]) -> str:
    """The --route syntax of a route, for the table."""
    text = f"{route.get('when') or '*'} => {route.get('executor', '')}"
    for key in ROUTE_RESOURCES:
        if route.get(key) not in (None, ""):
            text += f",{key}={route[key]}"
    return text


def _toleration_text(toleration: dict[str, Any]) -> str:
    """The --toleration syntax of a toleration, for the table."""
    text = str(toleration.get("key") or "*")
    if toleration.get("operator", "Equal") != "Exists":
        text += f"={toleration.get('value', '')}"
    seconds = toleration.get("toleration_seconds")
    if toleration.get("effect") or seconds is not None:
        text += f":{toleration.get('effect', '')}"
    if seconds is not None:
        text += f":{seconds}"
    return text


@module.command()
@connection_options
@click.option("-n", "--name", required=True, help="Module id (as printed by create) or name.")
@click.option(
    "--force",
    is_flag=True,
    help="Cancel running jobs and dead-letter queued events (reason ModuleDeleted: `ion event"
    " dlq list` shows them, `ion event dlq replay` resends them) instead of refusing.",
)
@click.option(
    "--drain-timeout",
    "timeout",
    type=click.FloatRange(min=0.1, max=3600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for running jobs to finish before giving up (the module then stays).",
)
def delete(name: str, force: bool, timeout: float) -> None:
    """Delete a module without losing an event (its history stays).

    It stops receiving, waits up to --timeout for running jobs (printing progress), then
    removes the module. While events are queued it refuses and says how many, unless --force:
    then running jobs are cancelled, queued events kept as dead letters (reason ModuleDeleted)
    and their runs shown CANCELLED.
    """
    err = console(stderr=True)
    reply = call(
        lambda client: client.delete_module_stream(
            name,
            force=force,
            timeout=timeout,
            on_progress=lambda line: err.print(line, soft_wrap=True),
        )
    )
    click.echo(reply.message or f"deleted module {reply.name}")


def _table_data(data: dict[str, Any]) -> dict[str, Any]:
    flat = dict(data)
    info = flat.pop("module", None) or {}
    for key in GET_FIELDS[GET_FIELDS.index("subscribes_to") :]:  # the module's own fields
        flat[key] = info.get(key, "")
    flat["command"] = shlex.join(info.get("command") or [])
    flat["tolerations"] = [_toleration_text(t) for t in info.get("tolerations") or []]
    flat["routes"] = [_route_text(r) for r in info.get("routes") or []]
    flat["node_selector"] = dict(sorted((info.get("node_selector") or {}).items()))  # a map
    return flat


@module.command()
@connection_options
@click.option("-n", "--name", required=True, help="Module id (as printed by create) or name.")
@output_option
def get(name: str, fmt: str) -> None:
    """Show a module's status: dispatchers, jobs in flight, outcomes and queues."""
    reply = call(lambda client: client.get_module(name))
    data = as_data(reply)
    if fmt == "table":
        render_one(_table_data(data), fmt, fields=GET_FIELDS)
    else:
        render_one(data, fmt)


def _list_row(info: types_pb2.ModuleInfo) -> dict[str, Any]:
    return as_data(info)


@module.command("list")
@connection_options
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted modules.")
@output_option
def list_(include_deleted: bool, fmt: str) -> None:
    """List modules."""
    reply = call(lambda client: client.list_modules(include_deleted=include_deleted))
    render([_list_row(m) for m in reply.modules], fmt, columns=LIST_COLUMNS)
