"""`ion event create|get` refuse bad ids, types, data and file names in one line, never a traceback.

Text that cannot be sent (not UTF-8) is refused before connecting; everything else is checked
by the management server with Ion's one set of rules (`ion.core.identifiers`) and comes back
as `ion: error: invalid request: <field>: ...`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def _one_line(result: Any) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ion: error: "), lines[0]
    assert "Traceback" not in result.output
    return str(lines[0])


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--type", "t\udcff"], "--type"),
        (["--type", "t", "--correlation-id", "flow-\udce9"], "--correlation-id"),
        (["--type", "t", "--data", "k\udcff=v"], "--data key"),
        (["--type", "t", "--data", "k=\udcff"], "--data value"),
    ],
)
def test_arguments_that_are_not_utf8_are_refused_before_connecting(
    tmp_path: Path, helpers: Any, args: list[str], named: str
) -> None:
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path)})
    port = helpers.free_port()  # nothing listens: the refusal must come first
    line = _one_line(ion("event", "create", *args, "--endpoint", f"localhost:{port}"))
    assert named in line and "UTF-8" in line


def test_a_file_whose_name_is_not_utf8_is_refused_before_connecting(
    tmp_path: Path, helpers: Any
) -> None:
    path = Path(os.fsdecode(bytes(tmp_path) + b"/photo-\xff.png"))
    path.write_bytes(b"\x89PNG")
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path)})
    port = helpers.free_port()
    line = _one_line(
        ion(
            "event", "create", "--type", "t", "--file", str(path), "--endpoint", f"localhost:{port}"
        )
    )
    assert "--file name" in line


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--type", "image.uploaded", "--correlation-id", "../etc"], "correlation_id"),
        (["--type", "image.uploaded", "--correlation-id", "a/b"], "correlation_id"),
        (["--type", "image.uploaded", "--correlation-id", "c" * 129], "correlation_id"),
        (["--type", "bad type"], "event_type"),
        (["--type", "image.uploaded", "--data", "a\tb=v"], "data"),
        (["--type", "image.uploaded", "--data", "k=" + "v" * 70_000], "data.k"),
    ],
)
def test_the_server_refuses_what_the_bus_would_dead_letter_in_one_line(
    ion: Any, args: list[str], field: str
) -> None:
    line = _one_line(ion("event", "create", *args))
    assert "invalid request" in line and field in line


def test_a_file_name_with_a_control_character_is_refused(ion: Any, tmp_path: Path) -> None:
    path = tmp_path / "a\x01b.txt"
    path.write_text("x")
    line = _one_line(ion("event", "create", "--type", "image.uploaded", "--file", str(path)))
    assert "invalid request" in line and "files" in line


def test_event_get_refuses_an_unsafe_event_id(ion: Any) -> None:
    line = _one_line(ion("event", "get", "--event-id", "../../x"))
    assert "invalid request" in line and "event_id" in line


def test_the_2018_default_correlation_id_still_works(ion: Any) -> None:
    result = ion("event", "create", "--type", "image.uploaded", "--correlation-id", "dev")
    assert result.exit_code == 0, result.output
    assert "dev" in result.output
