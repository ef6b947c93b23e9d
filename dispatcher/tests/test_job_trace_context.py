"""A job that runs elsewhere joins its attempt's trace: the Kubernetes Job's handler containers
and the Batch task's handler steps get TRACEPARENT and the OTEL_* settings (never the
exporter's headers), and `ion-handler job prepare|commit` start their spans under it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ion.core import telemetry
from ion.core.events import new_root_event
from ion.core.modules import ModuleSpec
from ion.core.ports.executor import BackendRefs, JobRequest
from ion.dispatcher.executors.azurebatch._task import TaskSettings, task_plan
from ion.dispatcher.executors.kubernetes import PodSettings, job_manifest

OTEL = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example.com:4318",
    "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer collector-secret",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.5",
    "OTEL_SERVICE_NAME": "ion-dispatcher",
}


def _tracer() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def _request(carrier: dict[str, str]) -> JobRequest:
    event = new_root_event("video.uploaded", data={"k": "v"})
    return JobRequest(
        job_id="transcoder-abc-a1",
        attempt=1,
        event=event,
        spec=ModuleSpec(
            name="transcoder",
            subscribes_to="video.uploaded",
            image="registry.example.com/transcoder:1",
            command=["transcode"],
        ),
        backends=BackendRefs(bus_url="servicebus://ns", blobs_url="azblob://acct/c"),
        trace_context=carrier,
    )


@pytest.fixture
def attempt_carrier(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, str], str]:
    for name, value in OTEL.items():
        monkeypatch.setenv(name, value)
    tracer, _ = _tracer()
    with tracer.start_as_current_span("attempt"):
        carrier = telemetry.current_carrier()
    return carrier, carrier["traceparent"]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_the_kubernetes_job_hands_its_handlers_the_attempts_trace_context(
    attempt_carrier: tuple[dict[str, str], str],
) -> None:
    carrier, traceparent = attempt_carrier
    pod = job_manifest(_request(carrier), PodSettings(handler_image="h:1"))["spec"]["template"][
        "spec"
    ]
    prepare, worker = pod["initContainers"]
    (commit,) = pod["containers"]
    for handler in (prepare, commit):
        env = _env(handler)
        assert env["TRACEPARENT"] == traceparent
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == OTEL["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.5"
        assert "OTEL_SERVICE_NAME" not in env  # the handler names itself ion-handler
    assert "collector-secret" not in json.dumps(pod)
    assert "TRACEPARENT" not in _env(worker)  # the module's environment is its own


def test_a_job_without_trace_context_gets_no_traceparent(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)
    pod = job_manifest(_request({}), PodSettings(handler_image="h:1"))["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    assert not {k for k in env if k.startswith(("OTEL_", "TRACE"))}


def test_the_batch_task_hands_its_handler_steps_the_trace_context(
    attempt_carrier: tuple[dict[str, str], str],
) -> None:
    carrier, traceparent = attempt_carrier
    plan = task_plan(
        _request(carrier),
        TaskSettings(handler_image="h:1", deadline_allowance=timedelta(seconds=10)),
    )
    assert plan.environment["TRACEPARENT"] == traceparent
    assert plan.environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == OTEL["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert "-e TRACEPARENT" in plan.command_line
    assert "collector-secret" not in json.dumps(plan.environment)
    assert "collector-secret" not in plan.command_line


def test_a_pod_step_starts_its_spans_under_the_requests_trace_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ion-handler job prepare` in a pod: its `prepare` span is a child of the attempt."""
    from ion.handler import podjob

    tracer, exporter = _tracer()
    with tracer.start_as_current_span("attempt") as attempt:
        carrier = telemetry.current_carrier()
    request = _request(carrier)
    seen: list[trace.SpanContext] = []

    async def step(_: JobRequest, __: Any) -> int:
        with tracer.start_as_current_span("prepare") as span:
            seen.append(span.get_span_context())
        return 0

    monkeypatch.setenv(podjob.REQUEST_ENV, request.model_dump_json())
    monkeypatch.setenv("ION_HOME", str(tmp_path))
    monkeypatch.setenv("ION_TELEMETRY__TRACES", "none")
    monkeypatch.setenv("ION_TERMINATION_LOG", str(tmp_path / "outcome"))
    monkeypatch.setattr(podjob.entrypoint, "start", lambda *a, **k: object())
    assert podjob._run(step) == 0
    (prepare,) = [s for s in exporter.get_finished_spans() if s.name == "prepare"]
    assert prepare.context.trace_id == attempt.get_span_context().trace_id
    assert prepare.parent is not None
    assert prepare.parent.span_id == attempt.get_span_context().span_id


def test_a_kubernetes_modules_container_is_a_run_span_of_its_attempt() -> None:
    """The executor reads the worker container's start, end and exit code from the pod and
    records them as a `run` span under the attempt (the module itself knows nothing of it)."""
    from ion.dispatcher.executors.kubernetes._outcome import worker_ran

    pod = {
        "status": {
            "initContainerStatuses": [
                {"name": "prepare", "state": {"terminated": {"exitCode": 0}}},
                {
                    "name": "worker",
                    "state": {
                        "terminated": {
                            "exitCode": 2,
                            "startedAt": "2026-12-02T01:00:00Z",
                            "finishedAt": "2026-12-02T01:00:03Z",
                        }
                    },
                },
            ]
        }
    }
    ran = worker_ran(pod)
    assert ran is not None
    start, end, code = ran
    assert (end - start).total_seconds() == 3 and code == 2
    assert (
        worker_ran({"status": {"initContainerStatuses": [{"name": "worker", "state": {}}]}}) is None
    )
    assert worker_ran(None) is None

    tracer, exporter = _tracer()
    with tracer.start_as_current_span("attempt") as attempt:
        carrier = telemetry.current_carrier()
    telemetry.record_span(
        "run",
        carrier=carrier,
        start=start,
        end=end,
        attributes={"ion.module": "transcoder", "ion.exit_code": code},
        error="the module exited with code 2",
        tracer=tracer,
    )
    (run,) = [s for s in exporter.get_finished_spans() if s.name == "run"]
    assert run.parent is not None and run.parent.span_id == attempt.get_span_context().span_id
    assert run.end_time is not None and run.start_time is not None
    assert (run.end_time - run.start_time) == 3 * 10**9
    assert run.status.status_code == trace.StatusCode.ERROR
    telemetry.record_span(
        "run", carrier={}, start=start, end=end, attributes={}, tracer=tracer
    )  # no trace context: nothing recorded
    assert len([s for s in exporter.get_finished_spans() if s.name == "run"]) == 1
