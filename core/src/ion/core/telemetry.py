"""Tracing: spans are made through the OpenTelemetry API everywhere; entry points choose where
they go, and trace context follows a flow across the bus and into job pods.

`ION_TELEMETRY__TRACES` picks the exporter:
- `auto` (the default): OTLP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, else nothing;
- `otlp`: OTLP over HTTP/protobuf, configured by the standard `OTEL_*` variables alone
  (endpoint, headers, timeout, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
  `OTEL_TRACES_SAMPLER[_ARG]`);
- `console`: finished spans as JSON on stderr; `none`: the API's no-op tracer.

Spans are batched and flushed when the process exits (the SDK's exit hook, which also runs after
SIGTERM since entry points turn it into a normal return). Trace context crosses the bus in the
W3C `traceparent` message property and reaches a job pod as `TRACEPARENT` in its environment
(`job_environment`), with the `OTEL_*` settings a job needs and never the exporter's headers
(they may hold credentials).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate

from ion.core import errors

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

    from ion.core.events import Event

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "none", "console", "otlp")

# Span attribute keys (the same on every span that knows them).
MODULE = "ion.module"
EVENT_TYPE = "ion.event.type"
EVENT_ID = "ion.event.id"
CORRELATION_ID = "ion.correlation_id"
PARENT_EVENT_ID = "ion.parent_event.id"
ATTEMPT = "ion.attempt"
JOB_ID = "ion.job.id"
EXECUTOR = "ion.executor"

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
FORWARDED_VARS = (
    *ENDPOINT_VARS,
    *PROTOCOL_VARS,
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "ION_TELEMETRY__TRACES",
    "ION_TELEMETRY__LOG_FORMAT",
)
"""What a job (or a dispatcher the management server deploys) inherits of this process's
tracing settings. Not `OTEL_SERVICE_NAME` (each component names itself) and never
`OTEL_EXPORTER_OTLP_*HEADERS` (collector credentials stay with the process they were given to)."""

SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)

_provider: TracerProvider | None = None


def _resolve(exporter: str, env: Mapping[str, str]) -> str:
    """The exporter `exporter` means in environment `env` (`auto` decided)."""
    if exporter not in EXPORTERS:
        raise errors.ConfigError(
            f"ION_TELEMETRY__TRACES={exporter!r} is not supported; use one of: {', '.join(EXPORTERS)}"
        )
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "none"
    if exporter == "auto":
        wanted = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
        has_endpoint = any(env.get(name, "").strip() for name in ENDPOINT_VARS)
        return "otlp" if has_endpoint and wanted == "otlp" else "none"
    return exporter


def _check_otlp_env(env: Mapping[str, str]) -> None:
    """Refuse OTLP settings this exporter cannot honour, naming the variable."""
    for name in PROTOCOL_VARS:
        value = env.get(name, "").strip()
        if value and value != "http/protobuf":
            raise errors.ConfigError(
                f"{name}={value!r} is not supported: Ion exports OTLP over http/protobuf "
                "(a collector's port 4318); unset it or set it to http/protobuf"
            )
    for name in ENDPOINT_VARS:
        value = env.get(name, "").strip()
        if value and not value.startswith(("http://", "https://")):
            raise errors.ConfigError(
                f"{name}={value!r} is not an http:// or https:// URL "
                "(e.g. http://collector.example.com:4318)"
            )
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in SAMPLERS:
        raise errors.ConfigError(
            f"OTEL_TRACES_SAMPLER={sampler!r} is not a sampler; use one of: {', '.join(SAMPLERS)}"
        )
    arg = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if arg and sampler.endswith("traceidratio"):
        try:
            ratio = float(arg)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise errors.ConfigError(
                f"OTEL_TRACES_SAMPLER_ARG={arg!r} is not a ratio between 0 and 1"
            )


def configure_tracing(
    exporter: str, *, service_name: str, environ: Mapping[str, str] | None = None
) -> str:
    """Install a tracer provider for `exporter` (see the module docstring); return the one used.

    `service_name` names the service unless `OTEL_SERVICE_NAME` does. The first call that
    installs a provider wins; later calls in the same process change nothing.

    Raises:
        errors.ConfigError: an unknown exporter name or a bad `OTEL_*` setting.
    """
    global _provider
    env = os.environ if environ is None else environ
    chosen = _resolve(exporter, env)
    if chosen == "otlp":
        _check_otlp_env(env)
    if chosen == "none" or _provider is not None:
        return chosen
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    attributes: dict[str, Any] = {"service.namespace": "ion"}
    if not env.get("OTEL_SERVICE_NAME", "").strip():
        attributes["service.name"] = service_name
    # The SDK reads OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and the sampler from the
    # environment itself; shutdown_on_exit flushes the batch when the process ends.
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=True)
    if chosen == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    log.debug("tracing: %s exporter for %s", chosen, service_name)
    return chosen


def flush(timeout_seconds: float = 10.0) -> bool:
    """Export every span ended so far (True when done in time; True with no provider)."""
    if _provider is None:
        return True
    return bool(_provider.force_flush(int(timeout_seconds * 1000)))


def event_attributes(
    event: Event, *, module: str = "", attempt: int | None = None
) -> dict[str, str | int]:
    """The span attributes naming `event` (and the module and attempt handling it)."""
    attrs: dict[str, str | int] = {
        EVENT_TYPE: event.type,
        EVENT_ID: event.event_id,
        CORRELATION_ID: event.correlation_id,
    }
    if event.context.parent_event_id:
        attrs[PARENT_EVENT_ID] = event.context.parent_event_id
    if module:
        attrs[MODULE] = module
    if attempt is not None:
        attrs[ATTEMPT] = attempt
    return attrs


def current_carrier() -> dict[str, str]:
    """The current span's W3C trace context (`traceparent`, maybe `tracestate`), or {}."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def job_environment(
    trace_context: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a job's handler containers get for tracing: `TRACEPARENT` (and
    `TRACESTATE`) from `trace_context`, plus this process's `FORWARDED_VARS` that are set."""
    env = os.environ if environ is None else environ
    out = {name: env[name] for name in FORWARDED_VARS if env.get(name)}
    if trace_context.get("traceparent"):
        out["TRACEPARENT"] = trace_context["traceparent"]
    if trace_context.get("tracestate"):
        out["TRACESTATE"] = trace_context["tracestate"]
    return out


def forwarded_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's tracing settings a component it deploys should share (`FORWARDED_VARS`)."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in FORWARDED_VARS if env.get(name)}


def environment_carrier(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The trace context a job was handed in `TRACEPARENT`/`TRACESTATE`, as a carrier."""
    env = os.environ if environ is None else environ
    carrier = {}
    if env.get("TRACEPARENT"):
        carrier["traceparent"] = env["TRACEPARENT"]
    if env.get("TRACESTATE"):
        carrier["tracestate"] = env["TRACESTATE"]
    return carrier


def record_span(
    name: str,
    *,
    carrier: Mapping[str, str],
    start: datetime,
    end: datetime,
    attributes: Mapping[str, str | int],
    error: str = "",
    tracer: Tracer | None = None,
) -> None:
    """Record a span that already happened elsewhere (a module's container in a pod), from
    `start` to `end`, as a child of the span in `carrier` (nothing without one).

    `tracer`: the process's `ion.dispatcher` tracer unless given (tests give their own).
    """
    if not carrier.get("traceparent"):
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    span = (tracer or trace.get_tracer("ion.dispatcher")).start_span(
        name,
        context=propagate.extract(dict(carrier)),
        attributes=dict(attributes),
        start_time=int(start.timestamp() * 1e9),
    )
    if error:
        span.set_status(Status(StatusCode.ERROR, error[:200]))
    span.end(end_time=int(end.timestamp() * 1e9))


@contextlib.contextmanager
def parent(carrier: Mapping[str, str]) -> Iterator[None]:
    """Make the trace context in `carrier` the parent of spans started inside the block
    (no-op for an empty carrier)."""
    if not carrier.get("traceparent"):
        yield
        return
    token = otel_context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)
