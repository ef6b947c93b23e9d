"""Run a pipeline file on this machine: start every module, raise the root event, wait.

This is what `make demo` runs (`ion-management pipeline run FILE`, also `ion pipeline run`).
It drives the same control plane as `ion up`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from ion.core.config import IonSettings
from ion.core.flow import Flow
from ion.core.modules import PipelineSpec
from ion.core.records import ModuleRecord
from ion.management.control import ControlPlane


async def run_pipeline(
    pipeline: PipelineSpec,
    settings: IonSettings,
    *,
    data: Mapping[str, str] | None = None,
    timeout: float = 300.0,
    on_progress: Callable[[Flow], None] | None = None,
) -> Flow:
    """Start the pipeline's modules, raise its root event, and return the settled flow.

    Raises:
        errors.ValidationError: the root event's data break a rule.
        errors.TransientError: the flow did not settle within `timeout` seconds.
    """
    async with ControlPlane(settings, working_dir=pipeline.base_dir) as plane:
        now = datetime.now(UTC)
        for spec in pipeline.modules:
            await plane.start_module(ModuleRecord(id=spec.name, spec=spec, created_at=now))
        root = await plane.raise_event(
            pipeline.root_event, data={**pipeline.root_data, **(data or {})}
        )
        return await plane.wait_settled(
            root.correlation_id, timeout=timeout, on_progress=on_progress
        )
