"""Structured logging: every record carries the flow's correlation id, event id and module.

`bind(...)` sets those keys for the current task (contextvars), `ContextFilter` copies them onto
each record, and `configure(...)` (entry points only) installs text or JSON-lines output.
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
    """Copies the bound keys onto each record (empty string when unbound)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the context; never drops a record."""
        bound = _context.get()
        for key in KEYS:
            if not hasattr(record, _attr(key)):
                setattr(record, _attr(key), bound.get(key, ""))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the context keys."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
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


def configure(*, level: str = "INFO", fmt: str = "text") -> None:
    """Install one stderr handler with the context filter (entry points call this once)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
