"""`ion dev`: run one module locally through the real handler, without any server.

Nothing here checks the file contract itself: every run goes through the handler's own
`prepare` and `commit` (`ion.handler`) over the embedded backends (SQLite bus and metadata,
filesystem blobs), so a module `ion dev` accepts is one production accepts, and one production
refuses is refused here with the same message.

`ion dev run --command ...` does it in one go, in a temporary Ion home: it records the input
files and data as a root event, prepares the job directory from it (in/data,
in/eventmeta.json, out/...), runs the module with HANDLER_BASE_DIR pointing at it, commits what
it wrote and shows the result. The 2018 step-by-step loop is kept over a persistent dev home,
`<ION_HOME>/dev`: `dev module init` records input files as a parent event, `dev module prepare`
lays out a base directory from it, you run your module, and `dev module commit` commits the
outputs, each raised event becoming a parent for the next module.
"""

from __future__ import annotations

import asyncio
import io
import json
import shlex
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import click

from ion.cli.commands._common import key_values
from ion.cli.config import ion_home
from ion.cli.errors import CliError
from ion.cli.output import console, output_option, render, render_one

if TYPE_CHECKING:
    from ion.core.events import Event, EventMeta
    from ion.core.ports.blobs import BlobStore
    from ion.core.ports.bus import EventBus
    from ion.core.ports.meta import MetadataStore
    from ion.handler.commit import CommitResult
    from ion.handler.job import HandlerJob

# The handler, the backends and pydantic are imported inside the commands that use them, so
# every other `ion` command starts without loading them.

T = TypeVar("T")

DEV_EVENT_TYPE = "dev"
"""Type of the root events `ion dev` records (a module never sees its incoming type)."""
URL_LIFETIME = timedelta(days=7)


def dev_home() -> Path:
    """Return the Ion home of the step-by-step loop: `<ION_HOME>/dev`."""
    return ion_home() / "dev"


@dataclass(frozen=True, slots=True)
class Stores:
    """The embedded backends of one Ion home."""

    home: Path
    bus: EventBus
    blobs: BlobStore
    meta: MetadataStore


@asynccontextmanager
async def open_stores(home: Path) -> AsyncIterator[Stores]:
    """Open the SQLite bus, filesystem blobs and SQLite metadata of an Ion home."""
    from ion.core.backends import open_blobs, open_bus, open_meta

    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    stores = Stores(
        home=home,
        bus=open_bus("sqlite://" + quote(str(home / "bus.db"))),
        blobs=open_blobs((home / "blobs").as_uri()),
        meta=open_meta("sqlite://" + quote(str(home / "meta.db"))),
    )
    try:
        yield stores
    finally:
        for backend in (stores.bus, stores.blobs, stores.meta):
            await backend.aclose()


def _run(home: Path, work: Callable[[Stores], Coroutine[Any, Any, T]]) -> T:
    """Run `work` over the stores of `home`; an Ion error becomes the CLI's one-line error."""
    from ion.core import errors

    async def go() -> T:
        async with open_stores(home) as stores:
            return await work(stores)

    try:
        return asyncio.run(go())
    except errors.IonError as err:
        raise CliError(str(err)) from err


def _types(event_types: str) -> frozenset[str]:
    return frozenset(t.strip() for t in event_types.split(",") if t.strip())


async def _record_root_event(
    stores: Stores, *, files: list[Path], data: list[tuple[str, str]], correlation_id: str
) -> Event:
    """Store input files and data as a root event, the way the front API raises one."""
    from ion.core.events import ROOT_PUBLISHER, EventMeta, KeyValuePair, new_root_event, pairs

    names = [p.name for p in files]
    for path in files:
        if not path.is_file():
            raise CliError(f"file {path} does not exist")
    if len(set(names)) != len(names):
        raise CliError(f"input files must have different names: {', '.join(sorted(names))}")
    event = new_root_event(DEV_EVENT_TYPE, correlation_id=correlation_id).model_copy(
        update={"data": pairs(data)}
    )
    prefix = f"{event.correlation_id}/{event.event_id}/{ROOT_PUBLISHER}"
    await stores.blobs.put_files([(f"{prefix}/{p.name}", p.resolve()) for p in files])
    url_pairs = [
        KeyValuePair(
            key=name, value=await stores.blobs.url_for(f"{prefix}/{name}", expires_in=URL_LIFETIME)
        )
        for name in names
    ]
    await stores.meta.upsert_event_meta(
        EventMeta(
            id=event.event_id,
            context=event.context,
            type=event.type,
            files=names,
            data=[*event.data, *url_pairs],
            files_prefix=prefix,
        )
    )
    return event


async def _commit(stores: Stores, job: HandlerJob) -> CommitResult:
    """The handler's commit; its refusal becomes the CLI's error, with the handler's message."""
    from ion.core import errors
    from ion.handler.commit import commit

    try:
        return await commit(
            job, blobs=stores.blobs, meta=stores.meta, bus=stores.bus, url_lifetime=URL_LIFETIME
        )
    except errors.ValidationError as err:
        raise CliError(f"commit refused: {err}") from err
    except errors.IonError as err:
        raise CliError(f"commit failed: {err}") from err


async def _own_pairs(stores: Stores, meta: EventMeta) -> list[dict[str, str]]:
    """The pairs the module wrote in its event file (the `<file> → URL` pairs left out)."""
    urls = {
        (f, await stores.blobs.url_for(f"{meta.files_prefix}/{f}", expires_in=URL_LIFETIME))
        for f in meta.files
    }
    return [p.model_dump() for p in meta.data if (p.key, p.value) not in urls]


def _stderr_fd() -> int | None:
    """Where the module's stdout goes: our stderr, so stdout holds only the result."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return None


def _summary(result: CommitResult) -> None:
    console(stderr=True).print(
        f"[green]✓[/green] committed: {len(result.outputs)} file(s), "
        f"{len(result.events)} event(s), {result.insights} insight(s)"
    )


@click.group()
def dev() -> None:
    """Run one module locally through the real handler (no server needed)."""


@dev.command("run")
@click.option("--command", required=True, help="The module's command, e.g. 'python resize.py'.")
@click.option(
    "--name",
    default="dev",
    show_default=True,
    help="The module's name (it appears in the handler's messages).",
)
@click.option("--event-types", default="", help="Event types it may raise, comma-separated.")
@click.option("--data", "data_items", multiple=True, help="key=value input data (repeatable).")
@click.option(
    "--file",
    "file_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Input file for in/data (repeatable).",
)
@click.option(
    "--base-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Job directory to use (kept) [a temporary one].",
)
@click.option("--env", "env_items", multiple=True, help="KEY=value for the module (repeatable).")
@output_option
def run(
    command: str,
    name: str,
    event_types: str,
    data_items: tuple[str, ...],
    file_paths: tuple[Path, ...],
    base_dir: Path | None,
    env_items: tuple[str, ...],
    fmt: str,
) -> None:
    """Run a module once on the given inputs, commit what it wrote and show it."""
    from ion.core.contract import JobLayout, parse_pairs
    from ion.handler.job import HandlerJob
    from ion.handler.prepare import prepare
    from ion.handler.supervisor import module_environment

    argv = shlex.split(command)
    if not argv:
        raise click.BadParameter("empty command", param_hint="--command")
    data = key_values(data_items, flag="--data")
    config = dict(key_values(env_items, flag="--env"))
    with tempfile.TemporaryDirectory(prefix="ion-dev-") as tmp:
        home = Path(tmp) / "home"
        base = (base_dir or Path(tmp) / "ion").resolve()

        async def prepared(stores: Stores) -> HandlerJob:
            event = await _record_root_event(
                stores, files=list(file_paths), data=data, correlation_id="dev"
            )
            job = HandlerJob(
                module=name, event=event, publishes=_types(event_types), layout=JobLayout(base)
            )
            await prepare(job, blobs=stores.blobs, meta=stores.meta)
            return job

        job = _run(home, prepared)
        click.echo(f"ion: running {command!r} with HANDLER_BASE_DIR={base}", err=True)
        try:
            code = subprocess.run(
                argv, env=module_environment(base, config), stdout=_stderr_fd(), check=False
            ).returncode
        except FileNotFoundError as err:
            raise CliError(f"command {argv[0]!r} not found") from err
        except PermissionError as err:
            raise CliError(f"command {argv[0]!r} cannot be run: {err.strerror}") from err
        if code != 0:
            raise CliError(f"the module exited with code {code}; nothing would be committed")

        async def committed(stores: Stores) -> tuple[CommitResult, list[dict[str, Any]]]:
            from ion.core.events import child_event_id

            result = await _commit(stores, job)
            files_of = {
                child_event_id(job.event.event_id, job.module, p.name): p.name
                for p in job.layout.out_events.glob("*.json")
            }
            events = []
            for child in result.events:
                meta = await stores.meta.get_event_meta(child.correlation_id, child.event_id)
                events.append(
                    {
                        "file": files_of.get(child.event_id, ""),
                        "event_type": meta.type,
                        "files": meta.files,
                        "data": await _own_pairs(stores, meta),
                    }
                )
            return result, events

        result, events = _run(home, committed)
        insights_file = job.layout.out_insights
        insights = {
            p.key: p.value
            for p in (
                parse_pairs(insights_file.read_bytes(), source="out/insights.json")
                if insights_file.is_file()
                else []
            )
        }
    files = [key.removeprefix(f"{job.output_prefix}/") for key in result.outputs]
    _summary(result)
    if fmt == "table":
        render_one(
            {
                "exit_code": code,
                "events": [
                    f"{e['event_type']} ({e['file']}): {', '.join(e['files'])}" for e in events
                ],
                "insights": insights,
                "files": files,
            },
            fmt,
        )
    else:
        render_one({"exit_code": code, "events": events, "insights": insights, "files": files}, fmt)


@dev.group("module")
def dev_module() -> None:
    """The 2018 step-by-step loop: init, prepare, (run yourself), commit."""


def _correlation_option(func: Any) -> Any:
    return click.option(
        "--correlation-id", default="dev", show_default=True, help="Flow the events belong to."
    )(func)


@dev_module.command("init")
@click.option("--files", default="", help="Comma-separated input files for the first module.")
@click.option("--data", "data_items", multiple=True, help="key=value input data (repeatable).")
@_correlation_option
def module_init(files: str, data_items: tuple[str, ...], correlation_id: str) -> None:
    """Record input files (and data) as a parent event; prints its id."""
    paths = [Path(f.strip()) for f in files.split(",") if f.strip()]
    data = key_values(data_items, flag="--data")

    async def work(stores: Stores) -> Event:
        return await _record_root_event(
            stores, files=paths, data=data, correlation_id=correlation_id
        )

    event = _run(dev_home(), work)
    click.echo(f"new parent event id: {event.event_id}")


def _prepare_options(func: Any) -> Any:
    options = [
        click.option("--base-dir", default="ion", show_default=True, help="Job directory."),
        click.option("--name", required=True, help="The module's name."),
        click.option("--event-types", required=True, help="Event types it may raise (comma list)."),
        click.option("--event-id", required=True, help="Id of this run's incoming event."),
        click.option("--parent-event-id", required=True, help="Event whose files are the input."),
        click.option("--correlation-id", default="dev", show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


async def _event_meta(stores: Stores, correlation_id: str, event_id: str) -> EventMeta:
    from ion.core import errors

    try:
        return await stores.meta.get_event_meta(correlation_id, event_id)
    except errors.NotFoundError as err:
        raise CliError(
            f"no event {event_id!r} in {stores.home} (correlation id {correlation_id!r});"
            " create one with `ion dev module init`"
        ) from err


@dev_module.command("prepare")
@_prepare_options
def module_prepare(
    base_dir: str,
    name: str,
    event_types: str,
    event_id: str,
    parent_event_id: str,
    correlation_id: str,
) -> None:
    """Lay out the job directory from the parent event's files and data (the handler's prepare).

    The run's incoming event (--event-id) is recorded as carrying the parent's files and data.
    """
    from ion.core.contract import JobLayout
    from ion.core.events import Context, DocumentType, Event
    from ion.handler.job import HandlerJob
    from ion.handler.prepare import prepare

    base = Path(base_dir).resolve()

    async def work(stores: Stores) -> int:
        incoming = await _event_meta(stores, correlation_id, parent_event_id)
        if event_id != parent_event_id:
            context = Context(
                name=incoming.context.name,
                event_id=event_id,
                correlation_id=correlation_id,
                parent_event_id=parent_event_id,
            ).as_document(DocumentType.EVENT_META)
            incoming = incoming.model_copy(update={"id": event_id, "context": context})
            await stores.meta.upsert_event_meta(incoming)
        job = HandlerJob(
            module=name,
            event=Event(context=incoming.context, type=incoming.type),
            publishes=_types(event_types),
            layout=JobLayout(base),
        )
        return len((await prepare(job, blobs=stores.blobs, meta=stores.meta)).files)

    count = _run(dev_home(), work)
    click.echo(f"prepared {base} for module {name} ({count} file(s)); now run it with:", err=True)
    click.echo(f"export HANDLER_BASE_DIR={base}")


@dev_module.command("commit")
@_prepare_options
def module_commit(
    base_dir: str,
    name: str,
    event_types: str,
    event_id: str,
    parent_event_id: str,
    correlation_id: str,
) -> None:
    """Commit the module's outputs (the handler's commit); each raised event feeds the next."""
    from ion.core import errors
    from ion.core.contract import JobLayout
    from ion.core.events import Context, Event
    from ion.handler.job import HandlerJob

    base = Path(base_dir).resolve()

    async def work(stores: Stores) -> CommitResult:
        try:
            meta = await stores.meta.get_event_meta(correlation_id, event_id)
            event = Event(context=meta.context, type=meta.type)
        except errors.NotFoundError:  # committed without `ion dev module prepare`
            context = Context(
                event_id=event_id, correlation_id=correlation_id, parent_event_id=parent_event_id
            )
            event = Event(context=context, type=DEV_EVENT_TYPE)
        job = HandlerJob(
            module=name, event=event, publishes=_types(event_types), layout=JobLayout(base)
        )
        return await _commit(stores, job)

    result = _run(dev_home(), work)
    _summary(result)
    for event in result.events:
        click.echo(f"raised {event.type} as event {event.event_id}")
    if not result.events:
        click.echo("no events raised", err=True)


async def _all_events(stores: Stores, correlation_id: str) -> list[EventMeta]:
    from ion.core.events import DocumentType, EventMeta

    found: list[EventMeta] = []
    for doc in await stores.meta.list_documents(correlation_id):
        # Typed documents, or their stored JSON from a store that returns it as such.
        if isinstance(doc, EventMeta):
            found.append(doc)
        elif (
            isinstance(doc, dict)
            and (doc.get("context") or {}).get("documentType") == DocumentType.EVENT_META.value
        ):
            found.append(EventMeta.model_validate(doc))
    return found


def _read(correlation_id: str) -> list[EventMeta]:
    """Every event of a flow in the dev home (none when it does not exist yet)."""
    if not (dev_home() / "meta.db").exists():
        return []
    return _run(dev_home(), lambda stores: _all_events(stores, correlation_id))


@dev_module.command("list")
@click.option("--root-event-id", default="", help="Only this event and the events it led to.")
@_correlation_option
@output_option
def module_list(root_event_id: str, correlation_id: str, fmt: str) -> None:
    """List the events in the dev home."""
    from ion.core.events import ROOT_PUBLISHER

    metas = _read(correlation_id)
    raised: dict[str, list[str]] = defaultdict(list)
    for meta in metas:
        raised[meta.context.parent_event_id].append(meta.id)
    rows: dict[str, dict[str, Any]] = {
        m.id: {
            "event_id": m.id,
            "type": m.type,
            "parent_event_id": m.context.parent_event_id,
            "files": len(m.files),
            "raised": raised.get(m.id, []),
        }
        for m in metas
    }
    for parent, children in raised.items():  # runs committed without a prepare
        if parent not in rows and parent != ROOT_PUBLISHER:
            rows[parent] = {
                "event_id": parent,
                "type": "",
                "parent_event_id": "",
                "files": 0,
                "raised": children,
            }
    listed = list(rows.values())
    if root_event_id:
        keep, pending = [], [root_event_id]
        while pending:
            current = pending.pop(0)
            if current in rows and current not in keep:
                keep.append(current)
                pending.extend(rows[current]["raised"])
        listed = [rows[k] for k in keep]
    render(listed, fmt, columns=("event_id", "type", "files", "raised"))


@dev_module.command("select")
@click.option("--module-id", required=True, help="Event id in the dev home.")
@_correlation_option
def module_select(module_id: str, correlation_id: str) -> None:
    """Link ./ion-module to the directory holding an event's files in the dev home."""
    meta = _run(dev_home(), lambda stores: _event_meta(stores, correlation_id, module_id))
    target = dev_home().resolve() / "blobs" / meta.files_prefix
    if not meta.files or not target.is_dir():
        raise CliError(f"event {module_id!r} has no files")
    link = Path("ion-module")
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
    click.echo(f"ion-module -> {target}")


@dev.group("event")
def dev_event() -> None:
    """Events raised in the dev home."""


@dev_event.command("list")
@click.option("--module-id", required=True, help="Event id whose run raised the events.")
@_correlation_option
def event_list(module_id: str, correlation_id: str) -> None:
    """Print every event a dev run raised, as it went on the bus."""
    from ion.core.events import Event

    metas = _read(correlation_id)
    children = [m for m in metas if m.context.parent_event_id == module_id]
    if not children and all(m.id != module_id for m in metas):
        raise CliError(
            f"no event {module_id!r} in {dev_home()} (correlation id {correlation_id!r})"
        )
    for meta in children:
        body = Event(context=meta.context, type=meta.type).to_json()
        click.echo(json.dumps(json.loads(body), indent=2))
