"""Prometheus metrics scraped from a real management server while the example pipeline runs.

`ion-management serve` (mutual TLS, its metrics on ION_TELEMETRY__METRICS_PORT) gets the five
modules of examples/media-classifiers through `ion module create` and one root event through
`ion event create`. `/metrics` is scraped over HTTP every 0.1 s while the flow runs and once it
has settled; the values are checked against the flow tree and the blob store: per module, jobs
started, succeeded, events received and published, histogram counts; prepare bytes against the
sizes of each module's input files, commit bytes against every output stored; the in-flight gauge
seen above zero during the flow and back to zero after; gRPC calls counted per method with
their latencies; no label carries an event or correlation id.
"""

from __future__ import annotations

import asyncio
import shlex
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ion.core.config import IonSettings
from ion.core.modules import ModuleSpec, PipelineSpec
from tests.e2e_support import correlation_id, free_port, management_server, wait_flow

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "media-classifiers"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of the exposition, by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    return sum(
        v
        for (n, got), v in samples.items()
        if n == name and all(dict(got).get(k) == want for k, want in labels.items())
    )


def _create_args(spec: ModuleSpec) -> list[str]:
    args = ["module", "create", "-n", spec.name, "-i", spec.subscribes_to]
    if spec.publishes:
        args += ["-o", ",".join(spec.publishes)]
    args += ["--command", shlex.join(spec.command), "--working-dir", str(EXAMPLE), "-p", "local"]
    return args + [f"--env={k}={v}" for k, v in spec.env.items()]


def _runs(flow: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def walk(event: dict[str, Any]) -> None:
        for run in event["triggered"]:
            out.append((event, run))
            for child in run["children"]:
                walk(child)

    for root in flow["roots"]:
        walk(root)
    return out


async def _settled_flow(settings: IonSettings, cid: str, modules: int) -> dict[str, Any]:
    """The flow once every module has run in it and it has settled (the test's own view of
    the backends knows no subscribers, so a settled flow is read until all modules show)."""
    deadline = time.monotonic() + 120
    while True:
        flow = (await wait_flow(settings, cid, timeout=120)).model_dump(mode="json")
        ran = {run["module"] for _, run in _runs(flow)}
        if (len(ran) == modules and flow["settled"]) or time.monotonic() > deadline:
            return flow
        await asyncio.sleep(0.2)


def _size(path: Path) -> int:
    return path.stat().st_size


async def test_metrics_during_and_after_the_example_pipeline_match_the_flow(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {"ION_TELEMETRY__METRICS_PORT": str(port)}
    with management_server(tmp_path, env) as management:
        before = scrape(url)
        pipeline = PipelineSpec.load(EXAMPLE / "pipeline.yaml")
        for spec in pipeline.modules:
            management.ion(*_create_args(spec))
        raised = management.ion(
            "event", "create", "--type", pipeline.root_event, "--data", "count=3"
        )
        cid = correlation_id(raised)

        during: list[Samples] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                during.append(scrape(url))
                done.wait(0.1)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            flow = await _settled_flow(management.settings, cid, len(pipeline.modules))
        finally:
            done.set()
            await asyncio.to_thread(poller.join)
        assert flow["succeeded"], flow
        after = scrape(url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    blobs = Path(management.settings.home) / "blobs" / cid
    per_module: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for event, run in _runs(flow):
        m = per_module[run["module"]]
        m["attempts"] += len(run["attempts"])
        m["published"] += len(run["children"])
        if event["parent_event_id"] != "frontapi" and event.get("published_by") != "frontapi":
            inputs = blobs / event["parent_event_id"] / event["published_by"]
            m["input_bytes"] += sum(_size(inputs / name) for name in event["files"])
    assert sorted(per_module) == sorted(s.name for s in pipeline.modules)

    for module, want in per_module.items():
        attempts = want["attempts"]
        assert delta("ion_events_received_total", module=module) == attempts, module
        assert delta("ion_jobs_started_total", module=module, executor="local") == attempts
        assert (
            delta("ion_jobs_finished_total", module=module, executor="local", outcome="succeeded")
            == attempts
        ), module
        assert delta("ion_jobs_finished_total", module=module, outcome="failed") == 0
        assert delta("ion_jobs_retried_total", module=module) == 0
        assert delta("ion_jobs_dead_lettered_total", module=module) == 0
        assert delta("ion_job_duration_seconds_count", module=module) == attempts
        assert 0 < delta("ion_job_duration_seconds_sum", module=module) < 120
        assert delta("ion_job_queue_wait_seconds_count", module=module) == attempts
        assert delta("ion_prepare_duration_seconds_count", module=module) == attempts
        assert delta("ion_commit_duration_seconds_count", module=module) == attempts
        assert delta("ion_prepare_bytes_total", module=module) == want["input_bytes"], module
        assert delta("ion_events_published_total", module=module) == want["published"], module
        assert value(after, "ion_jobs_in_flight", module=module) == 0
    stored = sum(_size(p) for p in blobs.rglob("*") if p.is_file())
    assert stored > 0
    assert delta("ion_commit_bytes_total") == stored
    # Scraped while the flow ran: jobs were in flight, and counts grew between scrapes.
    assert during, "no scrape happened during the flow"
    assert max(value(s, "ion_jobs_in_flight") for s in during) >= 1
    started = [value(s, "ion_jobs_started_total") for s in during]
    assert started == sorted(started) and started[0] < started[-1]

    # gRPC: five module creates and one event create, each timed.
    calls = {
        dict(labels)["method"]: v - before.get((name, labels), 0)
        for (name, labels), v in after.items()
        if name == "ion_grpc_requests_total" and dict(labels)["code"] == "OK"
    }
    creates = [m for m in calls if m.endswith("Service/Create") or "Create" in m.rsplit("/", 1)[1]]
    assert creates, calls
    module_creates = sum(v for m, v in calls.items() if "ModuleService" in m and "Create" in m)
    assert module_creates == len(pipeline.modules), calls
    assert any("EventService" in m and v >= 1 for m, v in calls.items()), calls
    for method, count in calls.items():
        assert delta("ion_grpc_request_duration_seconds_count", method=method) >= count, method

    # Bounded labels: no id of the flow appears in any label value.
    ids = {cid} | {event["event_id"] for event, _ in _runs(flow)}
    for _, labels in after:
        assert not {v for _, v in labels} & ids


def test_a_metrics_port_already_taken_is_a_clear_error() -> None:
    import socket

    from ion.core import errors, metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(errors.ConfigError, match="ION_TELEMETRY__METRICS_PORT"):
            metrics.serve("127.0.0.1", port)
