"""The 2018 module file contract: the job directory's layout and the files a module writes.

A module reads `in/data/` and `in/eventmeta.json` and writes `out/data/`, `out/insights.json`
and `out/events/*.json`. Everything here is pure parsing and path checking; the handler does
the I/O. Every path a module names is confined to its directory: `..`, absolute paths and
symlinks that resolve outside are refused with `PathEscapeError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ion.core import errors, identifiers
from ion.core.events import KeyValuePair

EVENT_TYPE_KEY = "eventType"
FILES_KEY = "files"


@dataclass(frozen=True, slots=True)
class JobLayout:
    """The directories and files of one job under its base directory (`/ion` in a container)."""

    base: Path

    @property
    def in_data(self) -> Path:
        """Parent's files, relative paths kept."""
        return self.base / "in" / "data"

    @property
    def in_eventmeta(self) -> Path:
        """Parent's key/value pairs; written only when non-empty."""
        return self.base / "in" / "eventmeta.json"

    @property
    def out_data(self) -> Path:
        """Files the module wants kept."""
        return self.base / "out" / "data"

    @property
    def out_insights(self) -> Path:
        """Key/value pairs the module reports."""
        return self.base / "out" / "insights.json"

    @property
    def out_events(self) -> Path:
        """One JSON file per event to raise."""
        return self.base / "out" / "events"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventFile:
    """One parsed `out/events/<name>.json`."""

    name: str
    """File name, which (with the parent event and module) fixes the child event's id."""
    event_type: str
    files: list[str]
    """Paths relative to out/data, validated to stay inside it; empty entries dropped."""
    data: list[KeyValuePair]
    """Other pairs, in file order; `files_index` is where the file URL pairs go."""
    files_index: int


MAX_PAIRS_FILE_BYTES = 16 * 1024 * 1024
"""Largest event or insights file a module may write."""


def parse_pairs(raw: bytes | str, *, source: str) -> list[KeyValuePair]:
    """Parse a JSON array of `{"key", "value"}` string pairs.

    Raises:
        errors.ValidationError: not JSON, not an array of pairs, or a value is not a string.
    """
    if not raw.strip():
        return []
    try:
        # Bounded like a bus message: depth, size, text, numbers (a module's output is input).
        body = identifiers.parse_json(raw, field=source, max_bytes=MAX_PAIRS_FILE_BYTES)
    except errors.ValidationError as err:
        raise errors.ValidationError(
            f"{source} is not valid JSON: {err}", field=source, rule="json"
        ) from err
    if not isinstance(body, list):
        raise errors.ValidationError(
            f'{source} must be a JSON array of {{"key": ..., "value": ...}} pairs',
            field=source,
            rule="array",
        )
    out: list[KeyValuePair] = []
    for i, item in enumerate(body):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise errors.ValidationError(
                f'{source}[{i}] must be an object with string "key" and "value"',
                field=source,
                rule="pair",
            )
        value = item.get("value", "")
        if not isinstance(value, str):
            raise errors.ValidationError(
                f"{source}[{i}] ({item['key']!r}): values must be strings, got {type(value).__name__}",
                field=source,
                rule="string-value",
            )
        out.append(KeyValuePair(key=item["key"], value=value))
    return out


def confined_relative(path: str, *, what: str) -> PurePosixPath:
    """Return `path` as a clean relative path, refusing absolute paths and `..`.

    Raises:
        errors.PathEscapeError: the path is absolute, empty, or climbs out with `..`.
    """
    candidate = PurePosixPath(path.replace("\\", "/"))
    if not path or candidate.is_absolute() or ".." in candidate.parts or "\0" in path:
        raise errors.PathEscapeError(
            f"{what} {path!r} leaves the module's directory; name files relative to it without '..'",
            field=what,
            rule="confined-path",
        )
    clean = PurePosixPath(*[p for p in candidate.parts if p not in ("", ".")])
    if not clean.parts:
        raise errors.PathEscapeError(
            f"{what} {path!r} names no file", field=what, rule="confined-path"
        )
    return clean


def resolve_inside(
    root: Path, relative: PurePosixPath, *, what: str, real_root: Path | None = None
) -> Path:
    """Return root/relative, refusing it if symlinks make it resolve outside `root`.

    `real_root` is `root.resolve()`, for callers checking many paths under one root.

    Raises:
        errors.PathEscapeError: the resolved path is outside `root`.
    """
    target = root.joinpath(*relative.parts)
    if real_root is None:
        real_root = root.resolve()
    if not target.resolve().is_relative_to(real_root):
        raise errors.PathEscapeError(
            f"{what} {relative.as_posix()!r} resolves outside {root} (through a symlink); "
            "write real files inside out/data",
            field=what,
            rule="confined-path",
        )
    return target


def parse_event_file(
    path: Path,
    *,
    layout: JobLayout,
    valid_types: frozenset[str],
    module: str,
    plain_files: frozenset[str] = frozenset(),
) -> EventFile:
    """Parse and validate one event file against the module's declared event types.

    `plain_files` are '/'-paths under out/data already known to be regular files reached
    through real directories (found by walking it); they are taken without further checks.

    Raises:
        errors.ValidationError: missing or undeclared eventType, a listed file that does not
            exist, or malformed JSON; the message names the file and what to fix.
        errors.PathEscapeError: a listed file leaves out/data.
    """
    source = f"out/events/{path.name}"
    pairs = parse_pairs(path.read_bytes(), source=source)
    event_type = ""
    files: list[str] = []
    data: list[KeyValuePair] = []
    files_index = -1
    out_data = layout.out_data
    real_out_data: Path | None = None
    for pair in pairs:
        if pair.key == EVENT_TYPE_KEY:
            event_type = pair.value
        elif pair.key == FILES_KEY:
            files_index = len(data)
            for entry in pair.value.split(","):
                entry = entry.strip()
                if not entry:
                    continue  # an empty `files` value names no file
                if entry in plain_files:
                    files.append(entry)
                    continue
                rel = confined_relative(entry, what=f"{source}: file")
                if real_out_data is None:
                    real_out_data = out_data.resolve()
                target = resolve_inside(
                    out_data, rel, what=f"{source}: file", real_root=real_out_data
                )
                if not target.is_file():
                    raise errors.ValidationError(
                        f"module {module!r}: {source} lists file {entry!r}, which is not in out/data",
                        field=source,
                        rule="file-exists",
                    )
                files.append(rel.as_posix())
        else:
            data.append(pair)
    if not event_type:
        raise errors.ValidationError(
            f"module {module!r}: {source} has no 'eventType' pair; add one of: "
            f"{', '.join(sorted(valid_types)) or '(the module declares no events)'}",
            field=source,
            rule="event-type-required",
        )
    if event_type not in valid_types:
        raise errors.ValidationError(
            f"module {module!r}: event type {event_type!r} is not declared; "
            f"declare it with -o / publishes, or fix {source}",
            field=source,
            rule="event-type-declared",
        )
    return EventFile(
        name=path.name,
        event_type=event_type,
        files=files,
        data=data,
        files_index=files_index if files_index >= 0 else len(data),
    )
