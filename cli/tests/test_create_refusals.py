"""`ion module create` shows the server's refusal of a module it could never run as one line (#10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize(
    ("flags", "field", "words"),
    [
        (["--command", "true", "--working-dir", "{missing}"], "working_dir", "not a directory"),
        (["-m", "team/app:1", "--command", "python app.py"], "moduleimage", "not both"),
    ],
)
def test_refused_in_one_line_naming_the_field(
    ion: Any, tmp_path: Path, flags: list[str], field: str, words: str
) -> None:
    flags = [f.format(missing=tmp_path / "missing") for f in flags]
    result = ion("module", "create", "-n", "door", "-i", "door.in", *flags)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ion: error: invalid request: field {field!r}: "), lines[0]
    assert words in lines[0] and "Traceback" not in result.output
    assert "door-" not in ion("module", "list").stdout
