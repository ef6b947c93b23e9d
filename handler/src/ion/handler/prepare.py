"""Prepare: build the job directory and bring the parent's files and data into `in/`.

Unlike 2018, files in sub-directories arrive with their paths, an empty `files` entry is no
file, a failed download fails prepare (never a corrupt input), and nothing expires: files are
read from the blob store with the job's own credential, not through a time-limited URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import trace

from ion.core import errors, metrics, telemetry
from ion.core.contract import JobLayout, confined_relative
from ion.core.events import KeyValuePair
from ion.core.ports.blobs import BlobStore
from ion.core.ports.meta import MetadataStore
from ion.handler.job import HandlerJob

log = logging.getLogger(__name__)
tracer = trace.get_tracer("ion.handler")


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedInput:
    """What prepare put in front of the module."""

    files: list[str]
    data: list[KeyValuePair]


def build_layout(layout: JobLayout) -> None:
    """Create a clean job tree: empty in/data, out/data, out/events and an empty insights file."""
    for directory in (layout.in_data, layout.out_data, layout.out_events):
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
    layout.in_eventmeta.unlink(missing_ok=True)
    layout.out_insights.write_bytes(b"")


async def prepare(
    job: HandlerJob, *, blobs: BlobStore, meta: MetadataStore, layout_ready: bool = False
) -> PreparedInput:
    """Lay out the job directory and download the parent's files and key/value data.

    `layout_ready`: the caller made the empty tree `build_layout` makes, moments ago.

    Raises:
        errors.PathEscapeError: the parent's metadata names a file outside in/data.
        errors.NotFoundError: a file the parent listed is missing from the blob store.
    """
    with (
        tracer.start_as_current_span(
            "prepare", attributes=telemetry.event_attributes(job.event, module=job.module)
        ) as span,
        metrics.PREPARE_DURATION.labels(job.module).time(),
    ):
        layout = job.layout
        if layout_ready:
            pass
        elif layout.base.exists():  # a prepare repeated after a crash: clear what is there
            await asyncio.to_thread(build_layout, layout)
        else:  # a new job: a few mkdirs, cheaper than a thread hop
            build_layout(layout)
        try:
            event_meta = await meta.get_event_meta(job.event.correlation_id, job.event.event_id)
        except errors.NotFoundError:
            # An event raised straight onto the bus (no metadata document): its data is all there is.
            log.info("no eventMeta for %s; using the event's own data", job.event.event_id)
            files: list[str] = []
            data = list(job.event.data)
        else:
            files = [f for f in event_meta.files if f.strip()]
            data = list(event_meta.data)
            prefix = event_meta.files_prefix or (
                f"{event_meta.context.correlation_id}/{event_meta.context.parent_event_id}/"
                f"{event_meta.context.name}"
            )
            size = await _download_all(blobs, prefix, files, layout)
            metrics.PREPARE_BYTES.labels(job.module).inc(size)
            span.set_attribute("ion.input.bytes", size)
        span.set_attribute("ion.input.files", len(files))
        if data:
            payload = [p.model_dump() for p in data]
            layout.in_eventmeta.write_text(json.dumps(payload, ensure_ascii=False))  # small
        log.info("prepared %d file(s) and %d pair(s)", len(files), len(data))
        return PreparedInput(files=files, data=data)


async def _download_all(blobs: BlobStore, prefix: str, files: list[str], layout: JobLayout) -> int:
    """Download `files` into in/data; return their total size in bytes."""
    # Every name is checked before anything is written; then the whole tree moves in one batch.
    rels = [confined_relative(name, what="input file").as_posix() for name in files]
    in_data = layout.in_data
    items = [(f"{prefix}/{rel}", Path(f"{in_data}/{rel}")) for rel in rels]
    try:
        await blobs.get_files(items)
    except errors.NotFoundError as err:
        rel = next((rel for (key, _), rel in zip(items, rels, strict=True) if key == err.key), "")
        raise errors.NotFoundError(
            f"input file {rel!r} is listed by the parent event but missing from "
            f"the blob store at {err.key}",
            key=err.key,
        ) from err
    return sum(path.stat().st_size for _, path in items)
