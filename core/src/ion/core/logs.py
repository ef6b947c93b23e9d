"""Structured logging: every record carries the flow's correlation id, event id and module,
and the trace and span ids of the span it was logged in.

`bind(...)` sets Ion's keys for the current task (contextvars), `ContextFilter` copies them and
the current span's ids onto each record, and `configure(...)` (entry points only) installs text
or JSON-lines output (`ION_TELEMETRY__LOG_FORMAT=text|json`). A JSON line's fields: `time`,
`level`, `logger`, `message`, then those that are set of `service`, `trace_id`, `span_id`,
`correlation_id`, `event_id`, `module`, `job_id`, `attempt`, and `exception`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from opentelemetry import trace

from ion.core import errors

FORMATS = ("text", "json")
KEYS = ("correlation_id", "event_id", "module", "job_id", "attempt")
# LogRecord already has `module` (the Python module), so Ion's module name lives in `ion_module`.
_ATTRS = {"module": "ion_module"}


def _attr(key: str) -> str:
    return _ATTRS.get(key, key)


_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "ion_log_context", default=MappingProxyType({})
)


@contextlib.contextmanager
def bind(**values: object) -> Iterator[None]:
    """Add keys to every log record emitted inside the block (in this task)."""
    merged = {**_context.get(), **{k: str(v) for k, v in values.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound keys and the current span's trace and span ids (hex, as W3C and OTLP
    spell them) onto each record (empty string when unbound or outside a recorded span)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the context; never drops a record."""
        bound = _context.get()
        for key in KEYS:
            if not hasattr(record, _attr(key)):
                setattr(record, _attr(key), bound.get(key, ""))
        if not hasattr(record, "trace_id"):
            span = trace.get_current_span().get_span_context()
            record.trace_id = trace.format_trace_id(span.trace_id) if span.is_valid else ""
            record.span_id = trace.format_span_id(span.span_id) if span.is_valid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the trace ids and the context keys."""

    def __init__(self, *, service: str = "") -> None:
        """`service` names the program on every line (left out when empty)."""
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._service:
            body["service"] = self._service
        for key in ("trace_id", "span_id"):
            if value := getattr(record, key, ""):
                body[key] = value
        for key in KEYS:
            value = getattr(record, _attr(key), "")
            if value:
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Short human lines: time level logger [module event] message."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as one text line."""
        tags = " ".join(
            f"{k}={getattr(record, _attr(k))}"
            for k in ("module", "event_id", "attempt")
            if getattr(record, _attr(k), "")
        )
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if tags:
            line += f"  [{tags}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(*, level: str = "INFO", fmt: str = "text", service: str = "") -> None:
    """Install one stderr handler with the context filter (entry points call this once).

    Raises:
        errors.ConfigError: `fmt` is neither `text` nor `json`, or `level` is no level.
    """
    if fmt not in FORMATS:
        raise errors.ConfigError(
            f"log format {fmt!r} is not supported; use one of: {', '.join(FORMATS)}"
            " (ION_TELEMETRY__LOG_FORMAT)"
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter(service=service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    try:
        root.setLevel(level.upper())
    except ValueError:
        raise errors.ConfigError(
            f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR (ION_TELEMETRY__LOG_LEVEL)"
        ) from None
    root.handlers[:] = [handler]
