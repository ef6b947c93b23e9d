"""Dispatch rules in a real pipeline: `when:` drops events (recorded FILTERED), `routes:` send
each event to one of two executors of one dispatcher process, and the flow shows both.

The second executor is a local executor under another name (`local-gpu`, jobs in a directory of
its own), registered for this test only: the routing seam is the same one `azurebatch` plugs
into, and nothing here needs a cloud. The pipeline is examples/dispatch-rules with the big
files routed to `local-gpu`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ion.core import Resources, RunStatus
from ion.core.config import IonSettings, load_settings
from ion.core.flow import Flow
from ion.core.modules import PipelineSpec
from ion.core.ports.executor import Executor, JobRequest, JobResult
from ion.dispatcher.executors import named
from ion.dispatcher.executors.local import LocalExecutor
from ion.management.pipeline import run_pipeline
from tests.e2e_support import runs_by_mime, tree_text

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "dispatch-rules"

pytestmark = pytest.mark.slow


class Recording:
    """An executor that remembers what it was asked to run, then runs it locally."""

    def __init__(self, inner: LocalExecutor) -> None:
        self.inner = inner
        self.requests: list[JobRequest] = []

    async def submit(self, job: JobRequest) -> JobResult:
        self.requests.append(job)
        return await self.inner.submit(job)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.fixture
def gpu_executor(tmp_path: Path) -> Iterator[list[Recording]]:
    made: list[Recording] = []

    async def factory(ctx: named.ExecutorContext) -> Executor:
        inner = LocalExecutor(
            tmp_path / "gpu-jobs", bus=ctx.bus, blobs=ctx.blobs, meta=ctx.meta, clock=ctx.clock
        )
        made.append(Recording(inner))
        return made[-1]  # type: ignore[return-value]  # delegates the rest of the port

    named.register_executor("local-gpu", factory)
    try:
        yield made
    finally:
        named.unregister_executor("local-gpu")


def _settings(tmp_path: Path, **env: str) -> IonSettings:
    return load_settings(
        environ={
            "ION_HOME": str(tmp_path / "home"),
            "ION_BUS__RECEIVE_WAIT_SECONDS": "0.2",
            **env,
        }
    )


def _pipeline(tmp_path: Path) -> PipelineSpec:
    raw = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    transcode = next(m for m in raw["modules"] if m["name"] == "transcode")
    transcode["routes"][0]["executor"] = "local-gpu"
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    pipeline = PipelineSpec.load(path)
    return pipeline.model_copy(update={"base_dir": EXAMPLE})


async def test_when_filters_and_routes_pick_the_executor(
    tmp_path: Path, gpu_executor: list[Recording]
) -> None:
    settings = _settings(tmp_path, ION_DISPATCHER__ROUTES_TO="local-gpu")
    flow = await run_pipeline(_pipeline(tmp_path), settings, data={"video_kib": "1100"})
    assert flow.succeeded, flow.model_dump_json(indent=2)

    transcode, summarise = runs_by_mime(flow, "transcode"), runs_by_mime(flow, "summarise")
    assert {m: r.status for m, r in transcode.items()} == {
        "video/mp4": RunStatus.SUCCEEDED,
        "text/plain": RunStatus.FILTERED,
        "image/png": RunStatus.FILTERED,
    }
    assert {m: r.status for m, r in summarise.items()} == {
        "video/mp4": RunStatus.FILTERED,
        "text/plain": RunStatus.SUCCEEDED,
        "image/png": RunStatus.FILTERED,
    }
    filtered = transcode["image/png"]
    assert filtered.reason.startswith('filtered: when data.mime startswith "video/"')
    assert [a.state.value for a in filtered.attempts] == ["FILTERED"]
    assert not filtered.outputs and not filtered.children

    # the video (1100 KiB > 1 MiB) went to local-gpu through route 0, with one GPU asked for
    video = transcode["video/mp4"].attempts[-1]
    assert video.route is not None
    assert (video.route.index, video.route.executor) == (0, "local-gpu")
    assert video.route.resources == Resources(gpu=1)
    assert video.route.when == "files.size > 1MiB"
    (gpu,) = gpu_executor
    assert [r.spec.name for r in gpu.requests] == ["transcode"]
    job_spec = gpu.requests[0].spec
    assert job_spec.resources.gpu == 1 and not job_spec.when and not job_spec.routes
    # the text was summarised on the default executor, with no route (summarise has none)
    assert summarise["text/plain"].attempts[-1].route is None

    # -o json carries the route; the tree shows it and the filtered runs with their rule
    dumped = json.loads(flow.model_dump_json())
    routes = [
        a["route"]
        for e in Flow.model_validate(dumped).events()
        for r in e.triggered
        for a in r.model_dump(mode="json")["attempts"]
        if a["route"]
    ]
    assert routes == [
        {
            "index": 0,
            "executor": "local-gpu",
            "when": "files.size > 1MiB",
            "resources": {"cpu": "", "memory": "", "gpu": 1},
            "notes": "",
        }
    ]
    tree = tree_text(flow)
    assert (
        "transcode  SUCCEEDED" in tree
        and "route 0 → local-gpu (gpu=1) when files.size > 1MiB" in tree
    )
    assert tree.count("FILTERED") == 4
    assert 'filtered: when data.mime in ["text/plain", "text/markdown"] is false' in tree


async def test_a_small_video_takes_the_default_route(
    tmp_path: Path, gpu_executor: list[Recording]
) -> None:
    settings = _settings(tmp_path, ION_DISPATCHER__ROUTES_TO="local-gpu")
    flow = await run_pipeline(_pipeline(tmp_path), settings, data={"video_kib": "4"})
    assert flow.succeeded
    video = runs_by_mime(flow, "transcode")["video/mp4"].attempts[-1]
    assert video.route is not None
    assert (video.route.index, video.route.executor) == (1, "local")
    assert video.route.resources == Resources(cpu="500m")
    assert not gpu_executor[0].requests


async def test_a_route_to_an_executor_the_dispatchers_lack_is_refused(tmp_path: Path) -> None:
    from ion.core import errors

    with pytest.raises(errors.ValidationError) as caught:
        await run_pipeline(_pipeline(tmp_path), _settings(tmp_path), timeout=30)
    assert "executor 'local-gpu'" in str(caught.value) and "they have: local" in str(caught.value)


def test_pipeline_run_prints_filtered_runs_and_routes(tmp_path: Path) -> None:
    from ion.management.__main__ import cli

    result = CliRunner().invoke(
        cli,
        ["pipeline", "run", str(EXAMPLE / "pipeline.yaml"), "-o", "json"],
        env={"ION_HOME": str(tmp_path / "home"), "ION_BUS__RECEIVE_WAIT_SECONDS": "0.2"},
    )
    assert result.exit_code == 0, result.output
    flow = Flow.model_validate_json(result.stdout)
    statuses = sorted(r.status.value for r in flow.runs())
    assert statuses == ["FILTERED"] * 4 + ["SUCCEEDED"] * 3
    routes = [a.route for r in flow.runs() for a in r.attempts if a.route]
    assert [(c.index, c.executor, c.resources.gpu) for c in routes] == [(0, "local", 1)]
