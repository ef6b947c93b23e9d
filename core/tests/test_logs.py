"""Log records carry the bound flow context (correlation id, event id, Ion module)."""

from __future__ import annotations

import json
import logging

import pytest

from ion.core import logs


def _render(formatter: logging.Formatter, **bound: str) -> str:
    record = logging.LogRecord("ion.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    with logs.bind(**bound):
        logs.ContextFilter().filter(record)
    return formatter.format(record)


def test_json_lines_carry_the_bound_keys() -> None:
    line = json.loads(
        _render(logs.JsonFormatter(), module="resize", event_id="e1", correlation_id="c1")
    )
    assert line["message"] == "hello world"
    assert (line["module"], line["event_id"], line["correlation_id"]) == ("resize", "e1", "c1")


def test_text_lines_show_ion_module_not_the_python_module() -> None:
    text = _render(logs.TextFormatter(), module="resize", event_id="e1")
    assert "module=resize" in text and "event_id=e1" in text
    assert "test_logs" not in text


@pytest.mark.parametrize("formatter", [logs.JsonFormatter(), logs.TextFormatter()])
def test_unbound_records_have_no_context_keys(formatter: logging.Formatter) -> None:
    out = _render(formatter)
    assert "module" not in out and "event_id" not in out
