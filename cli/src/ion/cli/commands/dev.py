"""`ion dev`: run one module locally on the 2018 file contract, without any server.

`ion dev run --command ...` does it in one go: it lays out a job directory (in/data,
in/eventmeta.json, out/...), runs the module with HANDLER_BASE_DIR pointing at it, then checks
and shows what the module wrote (events, insights, output files). The 2018 step-by-step loop is
kept: `dev module init` stores input files as a parent event, `dev module prepare` lays out a
base directory from it, you run your module, and `dev module commit` checks the outputs and
stores each raised event as the parent of the next module. The store is `<ION_HOME>/store`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ion.cli.commands._common import key_values
from ion.cli.config import ion_home
from ion.cli.errors import CliError
from ion.cli.output import output_option, render, render_one

EVENT_TYPE_KEY = "eventType"
FILES_KEY = "files"


def store_dir() -> Path:
    """Return the dev store of module runs: `<ION_HOME>/store/modules`."""
    return ion_home() / "store" / "modules"


@dataclass
class Outputs:
    """What a module wrote under out/."""

    events: list[dict[str, Any]] = field(default_factory=list)
    insights: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def _pairs(path: Path, what: str) -> list[dict[str, str]]:
    text = path.read_text() if path.exists() else ""
    if not text.strip():
        return []
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise CliError(f"{what} {path} is not JSON: {err}") from err
    if not isinstance(raw, list) or not all(
        isinstance(p, dict) and isinstance(p.get("key"), str) and isinstance(p.get("value"), str)
        for p in raw
    ):
        raise CliError(
            f'{what} {path} must be a JSON array of {{"key": ..., "value": ...}} strings'
        )
    return [{"key": p["key"], "value": p["value"]} for p in raw]


def lay_out(base: Path, *, files: list[Path], data: list[tuple[str, str]]) -> None:
    """Create a clean job directory under `base` with the given input files and data."""
    for sub in ("in/data", "out/data", "out/events"):
        target = base / sub
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
    meta = base / "in" / "eventmeta.json"
    meta.unlink(missing_ok=True)
    pairs = [{"key": k, "value": v} for k, v in data]
    for source in files:
        shutil.copy2(source, base / "in" / "data" / source.name)
        pairs.append({"key": source.name, "value": (base / "in" / "data" / source.name).as_uri()})
    if pairs:
        meta.write_text(json.dumps(pairs, indent=2))
    (base / "out" / "insights.json").write_text("")


def read_outputs(base: Path, *, event_types: list[str]) -> Outputs:
    """Check and return what the module wrote, as the handler's commit would."""
    out = Outputs()
    data_dir = base / "out" / "data"
    out.files = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file())
    out.insights = {
        p["key"]: p["value"] for p in _pairs(base / "out" / "insights.json", "insights")
    }
    for path in sorted((base / "out" / "events").glob("*.json")):
        pairs = _pairs(path, "event file")
        values = {p["key"]: p["value"] for p in pairs}
        event_type = values.get(EVENT_TYPE_KEY, "")
        if not event_type:
            raise CliError(f"event file {path} has no eventType pair")
        if event_types and event_type not in event_types:
            raise CliError(
                f"event file {path}: event type {event_type!r} is not declared; declare it"
                f" with --event-types (now: {', '.join(event_types)})"
            )
        listed = [f.strip() for f in values.get(FILES_KEY, "").split(",") if f.strip()]
        for name in listed:
            target = (data_dir / name).resolve()
            if not target.is_relative_to(data_dir.resolve()) or not target.is_file():
                raise CliError(f"event file {path} lists {name!r}, which is not a file in out/data")
        extra = [p for p in pairs if p["key"] not in (EVENT_TYPE_KEY, FILES_KEY)]
        out.events.append(
            {"file": path.name, "event_type": event_type, "files": listed, "data": extra}
        )
    return out


@click.group()
def dev() -> None:
    """Run one module locally on the file contract (no server needed)."""
    store_dir().mkdir(parents=True, exist_ok=True)


@dev.command("run")
@click.option("--command", required=True, help="The module's command, e.g. 'python resize.py'.")
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
    event_types: str,
    data_items: tuple[str, ...],
    file_paths: tuple[Path, ...],
    base_dir: Path | None,
    env_items: tuple[str, ...],
    fmt: str,
) -> None:
    """Run a module once on the given inputs and show what it wrote."""
    argv = shlex.split(command)
    if not argv:
        raise click.BadParameter("empty command", param_hint="--command")
    types = [t.strip() for t in event_types.split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="ion-dev-") as tmp:
        base = (base_dir or Path(tmp) / "ion").resolve()
        lay_out(base, files=list(file_paths), data=key_values(data_items, flag="--data"))
        env = {**os.environ, **dict(key_values(env_items, flag="--env"))}
        env["HANDLER_BASE_DIR"] = str(base)
        click.echo(f"ion: running {command!r} with HANDLER_BASE_DIR={base}", err=True)
        try:
            code = subprocess.run(argv, env=env, check=False).returncode
        except FileNotFoundError as err:
            raise CliError(f"command {argv[0]!r} not found") from err
        if code != 0:
            raise CliError(f"the module exited with code {code}; nothing would be committed")
        outputs = read_outputs(base, event_types=types)
    result = {"exit_code": code, **outputs.__dict__}
    if fmt == "table":
        render_one(
            {
                "exit_code": code,
                "events": [
                    f"{e['event_type']} ({e['file']}): {', '.join(e['files'])}"
                    for e in outputs.events
                ],
                "insights": outputs.insights,
                "files": outputs.files,
            },
            fmt,
        )
    else:
        render_one(result, fmt)


@dev.group("module")
def dev_module() -> None:
    """The 2018 step-by-step loop: init, prepare, (run yourself), commit."""


@dev_module.command("init")
@click.option("--files", default="", help="Comma-separated input files for the first module.")
def module_init(files: str) -> None:
    """Store input files as a parent event; prints its id."""
    event_id = str(uuid.uuid4())
    target = store_dir() / event_id
    (target / "_blobs").mkdir(parents=True)
    (target / "_events").mkdir()
    for name in (f.strip() for f in files.split(",") if f.strip()):
        source = Path(name)
        if not source.is_file():
            shutil.rmtree(target)
            raise CliError(f"file {name} does not exist")
        shutil.copy2(source, target / "_blobs" / source.name)
    (target / "eventmeta.json").write_text("[]")
    click.echo(f"new parent event id: {event_id}")


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


def _parent(parent_event_id: str) -> Path:
    parent = store_dir() / parent_event_id
    if not parent.is_dir():
        raise CliError(
            f"no event {parent_event_id!r} in {store_dir()}; create one with `ion dev module init`"
        )
    return parent


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
    """Lay out the job directory from the parent event's files and data."""
    parent = _parent(parent_event_id)
    data = [(p["key"], p["value"]) for p in _pairs(parent / "eventmeta.json", "event metadata")]
    files = sorted(p for p in (parent / "_blobs").iterdir() if p.is_file())
    base = Path(base_dir).resolve()
    lay_out(base, files=files, data=data)
    (store_dir() / event_id / "_events").mkdir(parents=True, exist_ok=True)
    click.echo(f"prepared {base} for module {name}; now run it with:", err=True)
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
    """Check the module's outputs and store each raised event for the next module."""
    base = Path(base_dir).resolve()
    types = [t.strip() for t in event_types.split(",") if t.strip()]
    outputs = read_outputs(base, event_types=types)
    run_dir = store_dir() / event_id
    (run_dir / "_events").mkdir(parents=True, exist_ok=True)
    (run_dir / "insights.json").write_text(
        json.dumps([{"key": k, "value": v} for k, v in outputs.insights.items()], indent=2)
    )
    for event in outputs.events:
        child = str(uuid.uuid4())
        child_dir = store_dir() / child
        (child_dir / "_blobs").mkdir(parents=True)
        (child_dir / "_events").mkdir()
        for rel in event["files"]:
            shutil.copy2(base / "out" / "data" / rel, child_dir / "_blobs" / Path(rel).name)
        (child_dir / "eventmeta.json").write_text(json.dumps(event["data"], indent=2))
        body = {
            "context": {
                "name": name,
                "eventId": child,
                "correlationId": correlation_id,
                "parentEventId": event_id,
            },
            "type": event["event_type"],
        }
        (run_dir / "_events" / event["file"]).write_text(json.dumps(body, indent=2))
        click.echo(f"raised {event['event_type']} as event {child}")
    if not outputs.events:
        click.echo("no events raised", err=True)


@dev_module.command("list")
@click.option("--root-event-id", default="", help="Only this event and the events it led to.")
@output_option
def module_list(root_event_id: str, fmt: str) -> None:
    """List the events in the dev store."""
    rows: list[dict[str, Any]] = []
    for path in sorted(store_dir().iterdir() if store_dir().is_dir() else []):
        if path.name.startswith("_") or not path.is_dir():
            continue
        events = sorted(p.name for p in (path / "_events").glob("*.json"))
        rows.append(
            {
                "event_id": path.name,
                "files": len(list((path / "_blobs").glob("*"))),
                "raised": events,
            }
        )
    if root_event_id:
        rows = [r for r in rows if r["event_id"] == root_event_id] + [
            r
            for r in rows
            if r["event_id"] != root_event_id and _descends(r["event_id"], root_event_id)
        ]
    render(rows, fmt, columns=("event_id", "files", "raised"))


def _descends(event_id: str, root: str) -> bool:
    seen = set()
    current = event_id
    while current and current not in seen:
        seen.add(current)
        parent = ""
        for events in store_dir().glob("*/_events/*.json"):
            body = json.loads(events.read_text())
            if body.get("context", {}).get("eventId") == current:
                parent = events.parent.parent.name
                break
        if parent == root:
            return True
        current = parent
    return False


@dev_module.command("select")
@click.option("--module-id", required=True, help="Event id in the dev store.")
def module_select(module_id: str) -> None:
    """Link ./ion-module to an event's directory in the dev store."""
    target = _parent(module_id)
    link = Path("ion-module")
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
    click.echo(f"ion-module -> {target}")


@dev.group("event")
def dev_event() -> None:
    """Events raised in the dev store."""


@dev_event.command("list")
@click.option("--module-id", required=True, help="Event id whose run raised the events.")
def event_list(module_id: str) -> None:
    """Print every event a dev run raised."""
    for path in sorted((_parent(module_id) / "_events").glob("*.json")):
        click.echo(path.read_text())
