"""`ion dev`: running one module locally on the file contract, one-shot and step by step."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


# --- `ion dev` and production agree ---------------------------------------------------------
#
# Each module below runs twice on the same base directory: through `ion dev run`, and through
# the production path (the handler's prepare, the module under the handler's environment, the
# handler's commit over embedded backends). Both must accept, or both refuse with one message.

WRITE = """
import json, os, pathlib
base = pathlib.Path(os.environ["HANDLER_BASE_DIR"])
out = base / "out"
def event(name, *pairs):
    (out / "events" / name).write_text(json.dumps([{"key": k, "value": v} for k, v in pairs]))
"""

AGREEMENT_CASES: dict[str, tuple[str, list[str], str | None]] = {
    # name: (module body, declared event types, expected production error rule or None)
    "no types, writes only data": (
        '(out / "data" / "a.txt").write_text("a")\n'
        '(out / "insights.json").write_text(json.dumps([{"key": "n", "value": "1"}]))\n',
        [],
        None,
    ),
    "no types, writes an event file": (
        '(out / "data" / "a.txt").write_text("a")\nevent("e.json", ("eventType", "done"), ("files", "a.txt"))\n',
        [],
        "event-type-declared",
    ),
    "no types, event file without eventType": (
        'event("e.json", ("k", "v"))\n',
        [],
        "event-type-required",
    ),
    "declared type, files in a sub-directory": (
        '(out / "data" / "sub").mkdir()\n(out / "data" / "sub" / "b.txt").write_text("b")\n'
        'event("e.json", ("eventType", "done"), ("files", "sub/b.txt, "), ("k", "v"))\n',
        ["done"],
        None,
    ),
    "undeclared type": (
        'event("e.json", ("eventType", "other"))\n',
        ["done"],
        "event-type-declared",
    ),
    "listed file missing": (
        'event("e.json", ("eventType", "done"), ("files", "missing.txt"))\n',
        ["done"],
        "file-exists",
    ),
    "listed path leaves out/data with ..": (
        'event("e.json", ("eventType", "done"), ("files", "../insights.json"))\n',
        ["done"],
        "confined-path",
    ),
    "symlink in out/data pointing out": (
        '(out / "data" / "link.txt").symlink_to(base.parent / "secret.txt")\n',
        ["done"],
        "confined-path",
    ),
    "event file is not JSON": (
        '(out / "events" / "e.json").write_text("{not json")\n',
        ["done"],
        "json",
    ),
    "insights value not a string": (
        '(out / "insights.json").write_text(json.dumps([{"key": "n", "value": 1}]))\n',
        ["done"],
        "string-value",
    ),
}


def _production(
    home: Path, base: Path, script: Path, *, name: str, publishes: list[str]
) -> tuple[list[str] | None, str]:
    """Prepare, run and commit as production does; return (output files, "") or (None, error)."""
    from ion.core import errors
    from ion.core.backends import open_blobs, open_bus, open_meta
    from ion.core.contract import JobLayout
    from ion.core.events import Context, Event
    from ion.handler.commit import commit
    from ion.handler.job import HandlerJob
    from ion.handler.prepare import prepare
    from ion.handler.supervisor import module_environment

    job = HandlerJob(
        module=name,
        event=Event(context=Context(event_id="e-1", correlation_id="c-1"), type="start"),
        publishes=frozenset(publishes),
        layout=JobLayout(base),
    )
    home.mkdir(parents=True, exist_ok=True)
    bus = open_bus(f"sqlite://{home / 'bus.db'}")
    blobs = open_blobs((home / "blobs").as_uri())
    meta = open_meta(f"sqlite://{home / 'meta.db'}")

    async def go() -> list[str]:
        try:
            await prepare(job, blobs=blobs, meta=meta)
            ran = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, str(script)],
                env=module_environment(base, {}),
                check=False,
            )
            assert ran.returncode == 0
            result = await commit(job, blobs=blobs, meta=meta, bus=bus)
            return [key.removeprefix(f"{job.output_prefix}/") for key in result.outputs]
        finally:
            for backend in (bus, blobs, meta):
                await backend.aclose()

    try:
        return asyncio.run(go()), ""
    except errors.ValidationError as err:
        return None, f"{err.rule}\x00{err}"


@pytest.mark.parametrize("case", list(AGREEMENT_CASES))
def test_ion_dev_and_production_agree(tmp_path: Path, helpers: Any, case: str) -> None:
    body, types, refused_by = AGREEMENT_CASES[case]
    script = tmp_path / "m.py"
    script.write_text(WRITE + body)
    (tmp_path / "secret.txt").write_text("not the module's")
    base = (tmp_path / "job").resolve()
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path / "home")})
    dev = ion(
        "dev",
        "run",
        "--command",
        f"{sys.executable} {script}",
        "--name",
        "m",
        "--event-types",
        ",".join(types),
        "--base-dir",
        str(base),
        "-o",
        "json",
    )
    files, error = _production(tmp_path / "prod", base, script, name="m", publishes=types)
    if refused_by is None:
        assert error == "", error
        assert dev.exit_code == 0, dev.output
        assert json.loads(dev.stdout)["files"] == files
    else:
        rule, message = error.split("\x00")
        assert files is None and rule == refused_by, error
        assert dev.exit_code == 1
        assert dev.stdout == ""
        assert dev.stderr.splitlines()[-1] == f"ion: error: commit refused: {message}"
        assert "Traceback" not in dev.output


def test_dev_module_commit_refuses_what_production_refuses(
    tmp_path: Path, helpers: Any, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "m.py"
    script.write_text(MODULE)  # raises 'seen'
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path / "home")})
    parent = ion("dev", "module", "init").stdout.strip().rsplit(" ", 1)[-1]
    flags = ["--name", "m", "--event-types", "", "--event-id", "run-1", "--parent-event-id", parent]
    assert ion("dev", "module", "prepare", *flags).exit_code == 0
    subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "HANDLER_BASE_DIR": str(tmp_path / "ion")},
        check=True,
    )
    committed = ion("dev", "module", "commit", *flags)
    assert committed.exit_code == 1
    assert committed.stderr.strip() == (
        "ion: error: commit refused: module 'm': event type 'seen' is not declared; "
        "declare it with -o / publishes, or fix out/events/e.json"
    )
    listed = json.loads(ion("dev", "module", "list", "-o", "json").stdout)
    assert {r["event_id"]: r["raised"] for r in listed} == {parent: ["run-1"], "run-1": []}


def test_dev_module_prepare_of_an_unknown_event_says_what_to_do(
    tmp_path: Path, helpers: Any
) -> None:
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path / "home")})
    result = ion(
        "dev",
        "module",
        "prepare",
        "--name",
        "m",
        "--event-types",
        "x",
        "--event-id",
        "r",
        "--parent-event-id",
        "nope",
        "--base-dir",
        str(tmp_path / "ion"),
    )
    assert result.exit_code == 1
    assert "no event 'nope'" in result.stderr and "ion dev module init" in result.stderr
    missing = ion("dev", "module", "init", "--files", str(tmp_path / "absent.txt"))
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
