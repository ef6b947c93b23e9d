"""Tracing settings, the trace context a job inherits, and JSON logs carrying trace ids.

The process-wide tracer provider is never installed here (one per process, and the rest of the
suite runs in this one); spans come from a provider of the test's own.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ion.core import errors, logs, telemetry
from ion.core.config import load_settings
from ion.core.events import Context, Event


def _tracer() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


@pytest.mark.parametrize(
    ("setting", "env", "chosen"),
    [
        ("auto", {}, "none"),
        ("auto", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
        ("auto", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, "otlp"),
        (
            "auto",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"},
            "none",
        ),
        (
            "auto",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"},
            "none",
        ),
        ("none", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "none"),
    ],
)
def test_auto_exports_over_otlp_only_when_an_endpoint_is_set(
    setting: str, env: dict[str, str], chosen: str
) -> None:
    if chosen == "otlp":
        # Deciding is all that is checked: a real install happens once per process, in the
        # subprocess test below.
        assert telemetry._resolve(setting, env) == "otlp"
    else:
        assert telemetry.configure_tracing(setting, service_name="t", environ=env) == chosen


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER='sometimes'"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG='2'",
        ),
    ],
)
def test_bad_otel_settings_are_refused_by_name(env: dict[str, str], named: str) -> None:
    full = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", **env}
    with pytest.raises(errors.ConfigError, match=named.replace("(", r"\(")):
        telemetry.configure_tracing("otlp", service_name="t", environ=full)


def test_an_unknown_exporter_setting_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="ION_TELEMETRY__TRACES"):
        load_settings(environ={"ION_TELEMETRY__TRACES": "zipkin"})
    with pytest.raises(errors.ConfigError, match="ION_TELEMETRY__LOG_FORMAT"):
        load_settings(environ={"ION_TELEMETRY__LOG_FORMAT": "xml"})
    with pytest.raises(errors.ConfigError, match="not supported"):
        telemetry.configure_tracing("zipkin", service_name="t", environ={})


def test_a_job_inherits_the_trace_context_and_otel_settings_but_never_headers() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example.com:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer secret",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=secret",
        "OTEL_SERVICE_NAME": "ion-dispatcher",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "ION_BUS__CONNECTION_STRING": "Endpoint=sb://x;SharedAccessKey=secret",
    }
    tracer, _ = _tracer()
    with tracer.start_as_current_span("attempt") as span:
        carrier = telemetry.current_carrier()
    job_env = telemetry.job_environment(carrier, env)
    ids = span.get_span_context()
    trace_id, span_id = trace.format_trace_id(ids.trace_id), trace.format_span_id(ids.span_id)
    assert job_env["TRACEPARENT"].startswith(f"00-{trace_id}-{span_id}-")
    assert job_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert job_env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert "secret" not in json.dumps(job_env)
    assert "OTEL_SERVICE_NAME" not in job_env  # the handler names itself


def test_spans_started_under_a_carrier_join_its_trace() -> None:
    tracer, exporter = _tracer()
    with tracer.start_as_current_span("attempt") as parent:
        carrier = telemetry.current_carrier()
    env = {"TRACEPARENT": carrier["traceparent"]}
    with (
        telemetry.parent(telemetry.environment_carrier(env)),
        tracer.start_as_current_span("prepare"),
    ):
        pass
    prepare = next(s for s in exporter.get_finished_spans() if s.name == "prepare")
    assert prepare.context.trace_id == parent.get_span_context().trace_id
    assert prepare.parent is not None
    assert prepare.parent.span_id == parent.get_span_context().span_id
    with telemetry.parent({}), tracer.start_as_current_span("alone"):  # no context: a new trace
        pass
    alone = next(s for s in exporter.get_finished_spans() if s.name == "alone")
    assert alone.parent is None


def test_event_attributes_name_the_event_module_and_attempt() -> None:
    event = Event(
        context=Context(event_id="e-2", correlation_id="c-1", parent_event_id="e-1"),
        type="media.ingested",
    )
    assert telemetry.event_attributes(event, module="thumbnailer", attempt=2) == {
        "ion.event.type": "media.ingested",
        "ion.event.id": "e-2",
        "ion.correlation_id": "c-1",
        "ion.parent_event.id": "e-1",
        "ion.module": "thumbnailer",
        "ion.attempt": 2,
    }


def _json_records(fmt: str, emit: object) -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(
        logs.JsonFormatter(service="ion-test") if fmt == "json" else logs.TextFormatter()
    )
    logger = logging.getLogger("ion.test.telemetry")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        assert callable(emit)
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_a_json_record_carries_the_trace_and_span_of_the_span_it_was_logged_in() -> None:
    tracer, _ = _tracer()
    spans: list[trace.Span] = []

    def emit(logger: logging.Logger) -> None:
        logger.info("before any span")
        with (
            logs.bind(correlation_id="c-9", event_id="e-9", module="ingest", attempt=1),
            tracer.start_as_current_span("attempt") as span,
        ):
            spans.append(span)
            logger.info("inside the attempt")

    first, second = (json.loads(line) for line in _json_records("json", emit))
    assert "trace_id" not in first and "span_id" not in first
    ids = spans[0].get_span_context()
    assert second["trace_id"] == trace.format_trace_id(ids.trace_id)
    assert second["span_id"] == trace.format_span_id(ids.span_id)
    assert len(second["trace_id"]) == 32 and len(second["span_id"]) == 16
    assert second["message"] == "inside the attempt"
    assert second["service"] == "ion-test"
    assert {k: second[k] for k in ("correlation_id", "event_id", "module", "attempt")} == {
        "correlation_id": "c-9",
        "event_id": "e-9",
        "module": "ingest",
        "attempt": "1",
    }


def test_text_logs_stay_one_short_line() -> None:
    lines = _json_records("text", lambda logger: logger.info("hello"))
    assert len(lines) == 1 and lines[0].endswith("ion.test.telemetry: hello")


def test_a_bad_log_format_or_level_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="log format 'xml'"):
        logs.configure(fmt="xml")
    with pytest.raises(errors.ConfigError, match="log level 'LOUD'"):
        logs.configure(level="LOUD")


def test_a_process_exports_its_spans_at_exit_to_the_configured_exporter(tmp_path: Path) -> None:
    """`console` in a child process: the batch is flushed at exit, spans carry the service."""
    code = (
        "from opentelemetry import trace\n"
        "from ion.core import telemetry\n"
        "telemetry.configure_tracing('console', service_name='ion-probe')\n"
        "with trace.get_tracer('t').start_as_current_span('probe'): pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "probe"' in done.stderr
    assert '"service.name": "ion-probe"' in done.stderr
