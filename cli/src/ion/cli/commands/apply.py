"""`ion apply -f FILE` and `ion delete -f FILE`: a pipeline file's modules on the server.

The file is the one `ion pipeline run` takes (`ion.core.modules.PipelineSpec`). `apply`
creates each module, or updates the live module of that name in place (its queued events are
kept), and prints what changed, like `kubectl apply`. `delete` removes them the way `ion module
delete` does: draining running jobs, refusing while events are queued unless `--force`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ion.cli.commands._common import call
from ion.cli.errors import CliError
from ion.cli.main import connection_options
from ion.cli.output import console, render
from ion.core import errors
from ion.core.modules import ModuleSpec, PipelineSpec
from ion.proto import module_pb2
from ion.proto.v1 import types_pb2

FORMATS = ("text", "table", "json", "yaml")
APPLY_COLUMNS = ("name", "id", "action", "changed")
DELETE_COLUMNS = ("name", "id", "action", "drained", "cancelled", "dead_lettered")


def _load(path: Path) -> PipelineSpec:
    try:
        return PipelineSpec.load(path)
    except errors.IonError as err:
        raise CliError(str(err)) from err


def _output_option(func: Any) -> Any:
    return click.option(
        "-o",
        "--output",
        "fmt",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help="text: a line per module, like kubectl; or a table, JSON or YAML.",
    )(func)


def _file_option(func: Any) -> Any:
    return click.option(
        "-f",
        "--filename",
        "path",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Pipeline file (the format `ion pipeline run` takes).",
    )(func)


def module_request(spec: ModuleSpec, base_dir: Path) -> module_pb2.ModuleCreateRequest:
    """Return the create request of a pipeline file's module.

    A relative `working_dir` is taken from the file's directory; a local command with none
    runs in that directory (as `ion pipeline run` runs it).
    """
    working_dir = spec.working_dir
    if working_dir:
        working_dir = str((base_dir / working_dir).resolve())
    elif spec.command and not spec.image:
        working_dir = str(base_dir.resolve())
    request = module_pb2.ModuleCreateRequest(
        modulename=spec.name,
        eventsubscriptions=spec.subscribes_to,
        eventpublications=",".join(spec.publishes),
        moduleimage=spec.image,
        handlerimage=spec.handler_image,
        instancecount=spec.instance_count,
        retrycount=spec.retry_count,
        command=spec.command,
        env=spec.env,
        secret_env=spec.secret_env,
        resources=types_pb2.Resources(
            cpu=spec.resources.cpu, memory=spec.resources.memory, gpu=spec.resources.gpu
        ),
        working_dir=working_dir,
        max_in_flight=spec.max_in_flight,
        image_pull_policy=spec.image_pull_policy,
        node_selector=spec.node_selector,
        tolerations=[
            types_pb2.Toleration(
                key=t.key,
                operator=t.operator,
                value=t.value,
                effect=t.effect,
                toleration_seconds=t.toleration_seconds,
            )
            for t in spec.tolerations
        ],
        service_account=spec.service_account,
        secrets=spec.secrets,
        image_pull_secrets=spec.image_pull_secrets,
        when=spec.when,
        routes=[
            types_pb2.Route(
                when=r.when,
                executor=r.executor,
                cpu=r.resources.cpu,
                memory=r.resources.memory,
                gpu=r.resources.gpu,
            )
            for r in spec.routes
        ],
    )
    request.retry_backoff_seconds = spec.retry_backoff_seconds
    request.max_execution_seconds = spec.max_execution_seconds
    return request


def _show(rows: list[dict[str, Any]], fmt: str, *, columns: tuple[str, ...]) -> None:
    if fmt == "text":
        return  # printed as each module was done
    render(rows, fmt, columns=columns)


@click.command()
@connection_options
@_file_option
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option(
    "-p",
    "--provider",
    default="",
    help="Where new modules' jobs run: local, docker, kubernetes, azurebatch [the server's"
    " default]; an existing module keeps its provider.",
)
@_output_option
def apply(path: Path, dry_run: bool, provider: str, fmt: str) -> None:
    """Create or update every module of a pipeline file on the server.

    Idempotent: each module is `created`, `configured` (updated in place: same id and
    subscription, so its queued events are kept and run with the new spec) or `unchanged`.
    """
    pipeline = _load(path)
    suffix = " (dry run)" if dry_run else ""
    rows: list[dict[str, Any]] = []

    async def run_all(client: Any) -> None:
        for spec in pipeline.modules:
            request = module_request(spec, pipeline.base_dir)
            request.provider = provider
            reply = await client.apply_module(request, dry_run=dry_run)
            row = {
                "name": spec.name,
                "id": reply.name,
                "action": reply.action,
                "changed": list(reply.changed),
            }
            rows.append(row)
            if fmt == "text":
                detail = f" ({', '.join(reply.changed)})" if reply.changed else ""
                ident = f" as {reply.name}" if reply.name and reply.action == "created" else ""
                click.echo(f"module/{spec.name} {reply.action}{ident}{detail}{suffix}")

    call(run_all)
    _show(rows, fmt, columns=APPLY_COLUMNS)


@click.command()
@connection_options
@_file_option
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
    help="Seconds to wait for each module's running jobs to finish.",
)
@_output_option
def delete(path: Path, force: bool, timeout: float, fmt: str) -> None:
    """Delete every module of a pipeline file from the server, draining each first.

    Without --force nothing is deleted while any of them has queued events (the refusal says
    how many). Modules the server does not have are reported `absent`.
    """
    pipeline = _load(path)
    rows: list[dict[str, Any]] = []
    err = console(stderr=True)

    async def run_all(client: Any) -> None:
        live = {m.name: m.id for m in (await client.list_modules()).modules}
        present: list[ModuleSpec] = []
        waiting: list[str] = []
        for spec in pipeline.modules:
            if spec.name not in live:
                rows.append({"name": spec.name, "id": "", "action": "absent"})
                if fmt == "text":
                    click.echo(f"module/{spec.name} absent")
                continue
            present.append(spec)
            seen = await client.delete_module(live[spec.name], dry_run=True)
            if seen.queued:
                waiting.append(f"{seen.name} ({seen.queued} queued)")
        if waiting and not force:
            raise CliError(
                f"nothing was deleted: {', '.join(waiting)} still have queued events. Wait for"
                " them to run, or pass --force: running jobs are cancelled and queued events"
                " dead-lettered with reason ModuleDeleted (`ion event dlq list` lists them,"
                " `ion event dlq replay` resends them once the module exists again)"
            )
        for spec in present:

            def progress(line: str, name: str = spec.name) -> None:
                err.print(f"module/{name}: {line}", soft_wrap=True)

            reply = await client.delete_module_stream(
                live[spec.name], force=force, timeout=timeout, on_progress=progress
            )
            rows.append(
                {
                    "name": spec.name,
                    "id": reply.name,
                    "action": "deleted",
                    "drained": reply.drained,
                    "cancelled": reply.cancelled,
                    "dead_lettered": reply.dead_lettered,
                }
            )
            if fmt == "text":
                summary = reply.message.replace(f"deleted module {reply.name}", "deleted")
                click.echo(f"module/{spec.name} {summary}")

    call(run_all)
    _show(rows, fmt, columns=DELETE_COLUMNS)
