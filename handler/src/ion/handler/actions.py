"""What `ion-handler prepare | commit | run` do, given the command's parsed flags.

Each function loads the settings, opens the backends named there, does the work and returns
the process exit code; an Ion error (a bad setting included) is one line on stderr, exit 1.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from opentelemetry import trace

from ion.core import entrypoint, errors, logs, telemetry
from ion.core.backends import open_blobs, open_bus, open_meta
from ion.core.config import IonSettings
from ion.core.contract import JobLayout
from ion.core.events import Context, Event
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.meta import MetadataStore
from ion.handler.job import HandlerJob
from ion.handler.prepare import prepare

tracer = trace.get_tracer("ion.handler")

Action = Callable[[HandlerJob, IonSettings, EventBus, BlobStore, MetadataStore], Awaitable[int]]


def prepare_job(flags: Mapping[str, Any]) -> int:
    """`ion-handler prepare`."""

    async def action(
        job: HandlerJob, _: IonSettings, bus: EventBus, blobs: BlobStore, meta: MetadataStore
    ) -> int:
        await prepare(job, blobs=blobs, meta=meta)
        return 0

    return _run(flags, action)


def commit_job(flags: Mapping[str, Any]) -> int:
    """`ion-handler commit`."""

    async def action(
        job: HandlerJob,
        settings: IonSettings,
        bus: EventBus,
        blobs: BlobStore,
        meta: MetadataStore,
    ) -> int:
        from ion.handler.commit import commit  # each step imports only its own work

        lifetime = timedelta(hours=settings.blobs.sas_lifetime_hours)
        await commit(job, blobs=blobs, meta=meta, bus=bus, url_lifetime=lifetime)
        return 0

    return _run(flags, action)


def run_job(flags: Mapping[str, Any], *, command: Sequence[str], max_exec_seconds: float) -> int:
    """`ion-handler run`: prepare, run the module, commit only if it exits 0."""

    async def action(
        job: HandlerJob,
        settings: IonSettings,
        bus: EventBus,
        blobs: BlobStore,
        meta: MetadataStore,
    ) -> int:
        from ion.handler.commit import commit
        from ion.handler.supervisor import module_environment, run_module

        await prepare(job, blobs=blobs, meta=meta)
        log_path = job.layout.base / "module.log"
        with tracer.start_as_current_span(
            "run", attributes=telemetry.event_attributes(job.event, module=job.module)
        ):
            result = await run_module(
                list(command),
                env=module_environment(job.layout.base, {}),
                cwd=None,
                log_path=log_path,
                deadline=timedelta(seconds=max_exec_seconds),
            )
        sys.stderr.write(log_path.read_text(errors="replace"))
        if result.exit_code != 0 or result.timed_out:
            why = "timed out" if result.timed_out else f"exited {result.exit_code}"
            print(f"ion-handler: module {job.module!r} {why}; nothing committed", file=sys.stderr)
            return result.exit_code or 1
        lifetime = timedelta(hours=settings.blobs.sas_lifetime_hours)
        await commit(job, blobs=blobs, meta=meta, bus=bus, url_lifetime=lifetime)
        return 0

    return _run(flags, action)


def _job(settings: IonSettings, flags: Mapping[str, Any]) -> HandlerJob:
    basedir = flags["basedir"]
    base = basedir if basedir not in ("", "./", ".\\") else settings.handler.base_dir
    event = Event(
        context=Context(
            event_id=flags["event_id"],
            correlation_id=flags["correlation_id"],
            parent_event_id=flags["parent_event_id"],
        ),
        type=flags["event_type"],
    )
    publishes = frozenset(t.strip() for t in flags["valideventtypes"].split(",") if t.strip())
    return HandlerJob(
        module=flags["module"], event=event, publishes=publishes, layout=JobLayout(Path(base))
    )


def _run(flags: Mapping[str, Any], action: Action) -> int:
    async def go() -> int:
        settings = entrypoint.start("ion-handler", log_level=flags.get("loglevel"))
        job = _job(settings, flags)
        bus, blobs, meta = (
            open_bus(settings.bus_url),
            open_blobs(settings.blobs_url),
            open_meta(settings.meta_url),
        )
        try:
            with logs.bind(
                correlation_id=job.event.correlation_id,
                event_id=job.event.event_id,
                module=job.module,
            ):
                return await action(job, settings, bus, blobs, meta)
        finally:
            for backend in (bus, blobs, meta):
                await backend.aclose()

    try:
        # Run by a job template that set TRACEPARENT, the step's spans join that trace.
        with telemetry.parent(telemetry.environment_carrier()):
            return asyncio.run(go())
    except errors.IonError as err:
        print(f"ion-handler: {err}", file=sys.stderr)
        return 1
