"""`ion dev`: running one module locally on the file contract, one-shot and step by step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MODULE = """
import json, os, pathlib
base = pathlib.Path(os.environ["HANDLER_BASE_DIR"])
meta = base / "in" / "eventmeta.json"
pairs = json.loads(meta.read_text()) if meta.exists() else []
names = sorted(p.name for p in (base / "in" / "data").iterdir())
(base / "out" / "data" / "seen.txt").write_text(",".join(names))
(base / "out" / "insights.json").write_text(json.dumps([{"key": "inputs", "value": str(len(names))}]))
(base / "out" / "events" / "e.json").write_text(json.dumps([
    {"key": "eventType", "value": "seen"}, {"key": "files", "value": "seen.txt"},
    {"key": "pairs", "value": str(len(pairs))}]))
"""


def test_dev_run_shows_what_the_module_wrote(tmp_path: Path, helpers: Any) -> None:
    script = tmp_path / "m.py"
    script.write_text(MODULE)
    (tmp_path / "in.txt").write_text("x")
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path / "home")})
    result = ion(
        "dev",
        "run",
        "--command",
        f"{sys.executable} {script}",
        "--event-types",
        "seen",
        "--data",
        "k=v",
        "--file",
        str(tmp_path / "in.txt"),
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["files"] == ["seen.txt"] and data["insights"] == {"inputs": "1"}
    [event] = data["events"]
    assert event["event_type"] == "seen" and event["files"] == ["seen.txt"]
    assert event["data"] == [{"key": "pairs", "value": "2"}]


def test_dev_run_refuses_undeclared_event_types_and_failures(tmp_path: Path, helpers: Any) -> None:
    script = tmp_path / "m.py"
    script.write_text(MODULE)
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path / "home")})
    result = ion("dev", "run", "--command", f"{sys.executable} {script}", "--event-types", "other")
    assert result.exit_code == 1 and "'seen' is not declared" in result.stderr
    result = ion("dev", "run", "--command", f"{sys.executable} -c 'raise SystemExit(4)'")
    assert result.exit_code == 1 and "code 4" in result.stderr


def test_dev_module_init_prepare_commit_loop(
    tmp_path: Path, helpers: Any, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "m.py"
    script.write_text(MODULE)
    (tmp_path / "a.txt").write_text("a")
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path / "home")})
    init = ion("dev", "module", "init", "--files", "a.txt")
    parent = init.stdout.strip().rsplit(" ", 1)[-1]
    flags = [
        "--name",
        "m",
        "--event-types",
        "seen",
        "--event-id",
        "run-1",
        "--parent-event-id",
        parent,
    ]
    prepared = ion("dev", "module", "prepare", *flags)
    assert prepared.exit_code == 0, prepared.output
    base = prepared.stdout.strip().split("=", 1)[1]
    assert (Path(base) / "in" / "data" / "a.txt").read_text() == "a"
    subprocess.run(
        [sys.executable, str(script)], env={**os.environ, "HANDLER_BASE_DIR": base}, check=True
    )
    committed = ion("dev", "module", "commit", *flags)
    assert committed.exit_code == 0, committed.output
    child = committed.stdout.strip().rsplit(" ", 1)[-1]
    listed = json.loads(ion("dev", "module", "list", "-o", "json").stdout)
    assert {r["event_id"] for r in listed} >= {parent, child, "run-1"}
    events = ion("dev", "event", "list", "--module-id", "run-1")
    assert json.loads(events.stdout)["context"]["eventId"] == child
    nxt = ion(
        "dev",
        "module",
        "prepare",
        "--name",
        "n",
        "--event-types",
        "x",
        "--event-id",
        "run-2",
        "--parent-event-id",
        child,
    )
    assert nxt.exit_code == 0
    assert (Path(base) / "in" / "data" / "seen.txt").read_text() == "a.txt"
