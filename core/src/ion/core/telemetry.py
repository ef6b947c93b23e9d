"""Tracing setup: spans are made through the OpenTelemetry API everywhere; entry points choose
where they go. `none` (the default) keeps the API's no-op tracer; `console` prints finished
spans as JSON to stderr, which is enough to see a flow's prepare / run / commit / publish
timings end to end. Trace context crosses the bus in the W3C `traceparent` message property.
"""

from __future__ import annotations

import sys

from ion.core import errors

EXPORTERS = ("none", "console")


def configure_tracing(exporter: str, *, service_name: str) -> None:
    """Install a tracer provider exporting to `exporter` (`none` or `console`).

    Raises:
        errors.ConfigError: an unknown exporter name.
    """
    if exporter == "none":
        return
    if exporter != "console":
        raise errors.ConfigError(
            f"ION_TELEMETRY__TRACES={exporter!r} is not supported; use one of: {', '.join(EXPORTERS)}"
        )
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    trace.set_tracer_provider(provider)
