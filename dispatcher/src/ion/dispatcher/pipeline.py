"""Run a pipeline file on the embedded platform: start every module, raise the root event, wait.

This is what `make demo` runs. The same machinery (EmbeddedPlatform) backs `ion up`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from ion.core.config import IonSettings
from ion.core.flow import Flow
from ion.core.modules import PipelineSpec
from ion.core.records import ModuleRecord
from ion.dispatcher.platform import EmbeddedPlatform


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
        errors.TransientError: the flow did not settle within `timeout` seconds.
    """
    async with EmbeddedPlatform(settings, working_dir=pipeline.base_dir) as platform:
        now = datetime.now(UTC)
        for spec in pipeline.modules:
            await platform.start_module(ModuleRecord(id=spec.name, spec=spec, created_at=now))
        root = await platform.raise_event(
            pipeline.root_event, data={**pipeline.root_data, **(data or {})}
        )
        return await platform.wait_settled(
            root.correlation_id, timeout=timeout, on_progress=on_progress
        )
