"""Run a pipeline file on this machine: start every module, raise the root event, wait.

This is what `make demo` runs (`ion-management pipeline run FILE`, also `ion pipeline run`).
It drives the same control plane as `ion up`, and leaves nothing of itself running: each
module is stored as a record (so its history and dead letters stay reachable from a server
on the same home), and when the run ends, however it ends, every module is retired the way a
module delete retires it (`ion.management.retire`): its subscription is removed, what it
still held is kept as its dead letters, and its open runs are recorded CANCELLED. An
interrupted run (Ctrl-C, a timeout) first cancels its running jobs and removes their folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ion.core import errors
from ion.core.config import IonSettings
from ion.core.events import Event
from ion.core.flow import Flow
from ion.core.modules import ModuleSpec, PipelineSpec
from ion.core.ports.meta import MetadataStore
from ion.core.records import AttemptState, ModuleRecord
from ion.management import retire
from ion.management.control import ControlPlane, RootFile

log = logging.getLogger(__name__)

_SUFFIX = string.ascii_lowercase + string.digits


async def _store(meta: MetadataStore, spec: ModuleSpec) -> ModuleRecord:
    """Store the module under a fresh id (`<name>-<5 characters>`, as `ion up` names them)."""
    for _ in range(20):
        suffix = "".join(secrets.choice(_SUFFIX) for _ in range(5))
        record = ModuleRecord(
            id=f"{spec.name}-{suffix}", spec=spec, provider="local", created_at=datetime.now(UTC)
        )
        try:
            return await meta.create_module(record)
        except errors.ConflictError:
            continue
    raise errors.TransientError(f"could not find a free id for module {spec.name!r}; retry")


async def run_pipeline(
    pipeline: PipelineSpec,
    settings: IonSettings,
    *,
    data: Mapping[str, str] | None = None,
    files: Sequence[Path | RootFile] = (),
    timeout: float = 300.0,
    on_progress: Callable[[Flow], None] | None = None,
    on_raised: Callable[[Event], None] | None = None,
) -> Flow:
    """Start the pipeline's modules, raise its root event (with `files`), and return the
    settled flow; `on_raised` gets the root event as soon as it is published.

    On the way out (success, error or cancellation) every module is retired (see the module
    docstring); if the flow did not settle, its running jobs are cancelled first.

    Raises:
        errors.ConflictError: the home has a live module of one of the pipeline's names.
        errors.ValidationError: the root event's data or a file name break a rule.
        errors.NotFoundError: a file to attach does not exist.
        errors.TransientError: the flow did not settle within `timeout` seconds.
    """
    async with ControlPlane(settings, working_dir=pipeline.base_dir) as plane:
        records: list[ModuleRecord] = []
        settled = False
        try:
            live = {m.spec.name: m.id for m in await plane.meta.list_modules()}
            shared = [f"{live[s.name]}" for s in pipeline.modules if s.name in live]
            if shared:
                raise errors.ConflictError(
                    f"the home {settings.home} has live modules of these names: "
                    f"{', '.join(shared)} (a server's, or a run still going or killed); this"
                    " run would share their subscriptions. Run without --home/ION_HOME (a"
                    " temporary home), give another home, or remove them (`ION_HOME=DIR ion up`,"
                    " then `ion delete -f FILE`)"
                )
            for spec in pipeline.modules:
                record = await _store(plane.meta, spec)
                records.append(record)
                await plane.start_module(record)
            root = await plane.raise_event(
                pipeline.root_event, data={**pipeline.root_data, **(data or {})}, files=files
            )
            if on_raised is not None:
                on_raised(root)
            flow = await plane.wait_settled(
                root.correlation_id, timeout=timeout, on_progress=on_progress
            )
            settled = True
            return flow
        finally:
            # Shielded: a second Ctrl-C must not leave half of it undone.
            await asyncio.shield(_retire_all(plane, records, interrupted=not settled))


async def _retire_all(
    plane: ControlPlane, records: Sequence[ModuleRecord], *, interrupted: bool
) -> None:
    """Stop the run's modules (at once if interrupted, cancelling their jobs) and retire them."""
    for record in records:
        with contextlib.suppress(errors.NotFoundError):
            await plane.stop_module(
                record.id, remove_subscription=False, grace=0.0 if interrupted else None
            )
    if interrupted:
        running = [
            (a.id, a.route.executor if a.route else None)
            for record in records
            for a in await plane.meta.list_attempts(
                module=record.spec.name,
                states=frozenset({AttemptState.RUNNING, AttemptState.PENDING}),
            )
            if a.started_at is None or a.started_at >= record.created_at
        ]
        if running:
            await plane.cancel_jobs(running)
    why = "pipeline run interrupted" if interrupted else "pipeline run ended"
    for record in records:
        try:
            await retire.retire(plane.bus, plane.meta, record, why=why)
            current = await plane.meta.get_module(record.id)
            await plane.meta.replace_module(current.model_copy(update={"deleted": True}))
        except errors.IonError as err:
            log.warning("could not retire module %s: %s", record.id, err)
