"""Commit: persist a successful module's outputs and raise its events, safely repeatable.

Everything is validated before anything is written, so a bad event file fails the commit with
no side effects. Writes are idempotent: blobs land at fixed keys, documents are upserts by id,
and child event ids derive from (parent event, module, event file), so the bus drops a re-sent
event. A commit that crashes half-way can therefore simply be run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from opentelemetry import trace

from ion.core import failpoints, metrics, telemetry
from ion.core.contract import EventFile, parse_event_file, parse_pairs, resolve_inside
from ion.core.events import (
    Context,
    DocumentType,
    Event,
    EventMeta,
    Insight,
    KeyValuePair,
    ModuleLogs,
    child_event_id,
    insight_id,
)
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.meta import MetadataStore
from ion.core.publishing import publish_events
from ion.handler.job import HandlerJob

log = logging.getLogger(__name__)
tracer = trace.get_tracer("ion.handler")


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitResult:
    """What a commit persisted."""

    outputs: list[str]
    """Blob keys of the uploaded files."""
    events: list[Event]
    """Child events published."""
    insights: int
    """Number of insight pairs stored."""


INLINE_ENTRIES = 64
"""Outputs of at most this many entries (files and directories under out/data, event files)
are read on the event loop: a few dozen syscalls cost less than the hop to a thread."""
INLINE_BYTES = 256 * 1024
"""...and at most this many bytes of event and insights files."""


class _TooMany(Exception):
    """The module's outputs are more than `INLINE_ENTRIES`/`INLINE_BYTES`: read them on a thread."""


def _output_files(out_data: Path, limit: int | None = None) -> tuple[list[str], frozenset[str]]:
    """Every file under out/data as a relative '/'-path (sorted), refusing symlinks that leave it.

    Also returns the plain files among them: regular files reached through real directories
    only, which therefore cannot resolve outside out/data (event files naming them need no
    further checks). Raises `_TooMany` once more than `limit` entries are seen.
    """
    if not out_data.is_dir():
        return [], frozenset()
    found: list[str] = []
    plain: set[str] = set()
    pending = [""]
    seen = 0
    while pending:
        rel_dir = pending.pop()
        with os.scandir(f"{out_data}/{rel_dir}" if rel_dir else out_data) as entries:
            for entry in entries:
                seen += 1
                if limit is not None and seen > limit:
                    raise _TooMany
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_symlink():
                    target = resolve_inside(out_data, PurePosixPath(rel), what="output file")
                    if target.is_file():
                        found.append(rel)
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    found.append(rel)
                    plain.add(rel)
    found.sort(key=lambda rel: rel.split("/"))
    return found, frozenset(plain)


def _event_paths(out_events: Path, limit: int | None) -> list[Path]:
    """The `*.json` files in out/events, sorted; `_TooMany` past `limit` entries or bytes."""
    try:
        with os.scandir(out_events) as entries:
            found = [e for e in entries if e.name.endswith(".json") and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    if limit is not None and (
        len(found) > limit or sum(e.stat().st_size for e in found) > INLINE_BYTES
    ):
        raise _TooMany
    return sorted(Path(e.path) for e in found)


def _read_outputs(
    job: HandlerJob, *, limit: int | None = None
) -> tuple[list[str], list[EventFile], list[KeyValuePair]]:
    """Find and validate everything the module wrote.

    With a `limit`, raises `_TooMany` (having read nothing that matters) if the outputs are
    more than can be read on the event loop; without one, it runs on a thread.
    """
    layout = job.layout
    outputs, plain_files = _output_files(layout.out_data, limit)
    event_paths = _event_paths(layout.out_events, limit)
    if limit is not None:
        with contextlib.suppress(FileNotFoundError):
            if layout.out_insights.stat().st_size > INLINE_BYTES:
                raise _TooMany
    event_files = [
        parse_event_file(
            p,
            layout=layout,
            valid_types=job.publishes,
            module=job.module,
            plain_files=plain_files,
        )
        for p in event_paths
    ]
    insights = (
        parse_pairs(layout.out_insights.read_bytes(), source="out/insights.json")
        if layout.out_insights.is_file()
        else []
    )
    return outputs, event_files, insights


async def commit(
    job: HandlerJob,
    *,
    blobs: BlobStore,
    meta: MetadataStore,
    bus: EventBus,
    url_lifetime: timedelta = timedelta(days=7),
    logs: ModuleLogs | None = None,
) -> CommitResult:
    """Upload out/data, store insights, record and publish one child event per event file.

    `logs`, the attempt's `modulelogs` document (succeeded), is recorded with the other
    documents once the outputs are accepted: all of them are written at once (one transaction
    on the embedded store), before the events are published.

    Raises:
        errors.ValidationError: an event or insights file is malformed or names an undeclared
            event type or a missing file (nothing is written in that case).
        errors.PathEscapeError: an output or a listed file leaves out/data.
    """
    layout = job.layout
    with (
        tracer.start_as_current_span(
            "commit", attributes=telemetry.event_attributes(job.event, module=job.module)
        ) as span,
        metrics.COMMIT_DURATION.labels(job.module).time(),
    ):
        # Validate everything first: a failed commit must leave no trace downstream.
        out_data = layout.out_data
        try:
            outputs, event_files, insights = _read_outputs(job, limit=INLINE_ENTRIES)
        except _TooMany:
            outputs, event_files, insights = await asyncio.to_thread(_read_outputs, job)

        prefix = job.output_prefix
        keys = [f"{prefix}/{rel}" for rel in outputs]
        # One batch: the store moves the whole tree in a few worker-thread calls. The child
        # events (one URL per listed file, no side effects) are built while the files copy.
        upload = (
            asyncio.create_task(
                blobs.put_files(
                    [(key, Path(f"{out_data}/{r}")) for key, r in zip(keys, outputs, strict=True)]
                )
            )
            if keys
            else None
        )
        try:
            children = [
                await _child_event(job, ef, blobs=blobs, prefix=prefix, url_lifetime=url_lifetime)
                for ef in event_files
            ]
        except BaseException:
            if upload is not None:
                await asyncio.wait([upload])  # nothing of the commit may still be writing
                if not upload.cancelled():
                    upload.exception()  # the first error wins; this one is only retrieved
            raise
        if upload is not None:
            await upload
            size = _total_size(out_data, outputs)
            metrics.COMMIT_BYTES.labels(job.module).inc(size)
            span.set_attribute("ion.output.bytes", size)
        span.set_attribute("ion.output.files", len(keys))

        writes: list[Coroutine[Any, Any, None]] = []
        if insights:
            context = Context(
                name=job.module,
                event_id=job.event.event_id,
                correlation_id=job.event.correlation_id,
                parent_event_id=job.event.context.parent_event_id,
            ).as_document(DocumentType.INSIGHT)
            writes.append(
                meta.upsert_insight(
                    Insight(
                        id=insight_id(job.event.event_id, job.module),
                        context=context,
                        data=insights,
                    )
                )
            )
        writes += [meta.upsert_event_meta(event_meta) for _, event_meta in children]
        if logs is not None:
            writes.append(meta.upsert_module_logs(logs))
        # Issued together: the store may commit them in one transaction (every one is an upsert,
        # so a commit repeated after a failure part-way writes the same documents again).
        if len(writes) == 1:
            await writes[0]
        elif writes:
            for outcome in await asyncio.gather(*writes, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        with tracer.start_as_current_span(
            "publish",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                **telemetry.event_attributes(job.event, module=job.module),
                "ion.events": len(children),
                "ion.event.types": sorted({child.type for child, _ in children}),
            },
        ):
            failpoints.reach("commit.before-publish")
            await publish_events(bus, [child for child, _ in children])
            failpoints.reach("commit.published")
        metrics.EVENTS_PUBLISHED.labels(job.module).inc(len(children))
        log.info(
            "committed %d file(s), %d insight(s), %d event(s)",
            len(keys),
            len(insights),
            len(children),
        )
        return CommitResult(outputs=keys, events=[c for c, _ in children], insights=len(insights))


def _total_size(out_data: Path, outputs: list[str]) -> int:
    """Bytes of the output files (relative to out/data) that were uploaded."""
    total = 0
    for rel in outputs:
        with contextlib.suppress(OSError):
            total += os.stat(f"{out_data}/{rel}").st_size
    return total


async def _child_event(
    job: HandlerJob, ef: EventFile, *, blobs: BlobStore, prefix: str, url_lifetime: timedelta
) -> tuple[Event, EventMeta]:
    event_id = child_event_id(job.event.event_id, job.module, ef.name)
    context = Context(
        name=job.module,
        event_id=event_id,
        correlation_id=job.event.correlation_id,
        parent_event_id=job.event.event_id,
        document_type=DocumentType.EVENT_META.value,
    )
    # The 2018 contract gives the child `<file> -> URL` pairs where the `files` key stood.
    url_pairs = [
        KeyValuePair(key=f, value=await blobs.url_for(f"{prefix}/{f}", expires_in=url_lifetime))
        for f in ef.files
    ]
    data = [*ef.data[: ef.files_index], *url_pairs, *ef.data[ef.files_index :]]
    event_meta = EventMeta(
        id=event_id,
        context=context,
        type=ef.event_type,
        files=ef.files,
        data=data,
        files_prefix=prefix,
    )
    return Event(context=context, type=ef.event_type), event_meta
