"""`ion-management pipeline run`: a home of its own, root files, no subscription left behind,
dead letters kept, and Ctrl-C that stops at once, cancels its jobs and names the flow."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ion.core.backends import open_bus, open_meta
from ion.core.config import IonSettings
from ion.management import retire
from tests.e2e_support import sigint_reaches_child

BIN = Path(sys.executable).parent

READER = """
import json, os, pathlib
base = pathlib.Path(os.environ["HANDLER_BASE_DIR"])
note = (base / "in" / "data" / "note.txt").read_text()
pairs = {p["key"]: p["value"] for p in json.loads((base / "in" / "eventmeta.json").read_text())}
(base / "out" / "insights.json").write_text(json.dumps(
    [{"key": "note", "value": note}, {"key": "colour", "value": pairs.get("colour", "")}]))
(base / "out" / "events" / "read.json").write_text(json.dumps([{"key": "eventType", "value": "note.read"}]))
"""
SLEEPER = """
import os, pathlib, time
pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
time.sleep(60)
"""


def _file(path: Path, modules: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"name": "p", "root_event": "note.new", "modules": modules}))
    return path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update(
        {"HOME": str(tmp_path / "user"), "TMPDIR": str(tmp_path / "tmp"), "GRPC_VERBOSITY": "ERROR"}
    )
    env.update(extra)
    return env


def test_a_run_with_a_home_keeps_its_dead_letters_and_leaves_no_subscription(
    tmp_path: Path,
) -> None:
    (tmp_path / "reader.py").write_text(READER)
    (tmp_path / "note.txt").write_text("hello")
    file = _file(
        tmp_path / "pipeline.yaml",
        [
            {
                "name": "reader",
                "subscribes_to": "note.new",
                "publishes": ["note.read"],
                "command": ["python", "reader.py"],
            },
            {
                "name": "failer",
                "subscribes_to": "note.read",
                "command": ["python", "-c", "raise SystemExit(3)"],
                "retry_count": 0,
            },
        ],
    )
    home = tmp_path / "home"
    done = subprocess.run(
        [
            str(BIN / "ion-management"),
            "--home",
            str(home),
            "pipeline",
            "run",
            str(file),
            "--file",
            f"note.txt={tmp_path / 'note.txt'}",
            "--data",
            "colour=blue",
            "-o",
            "json",
        ],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # failer dead-lettered: not a success
    flow = json.loads(done.stdout)
    (reader,) = flow["roots"][0]["triggered"]
    assert {kv["key"]: kv["value"] for kv in reader["insights"]} == {
        "note": "hello",
        "colour": "blue",
    }
    assert "ion event dlq list" in done.stderr
    assert not (tmp_path / "user" / ".ion").exists()  # ~/.ion untouched

    async def inspect() -> None:
        settings = IonSettings(home=home)
        bus, meta = open_bus(settings.bus_url), open_meta(settings.meta_url)
        try:
            records = await meta.list_modules(include_deleted=True)
            assert sorted(r.spec.name for r in records) == ["failer", "reader"]
            assert all(r.deleted for r in records)
            for record in records:  # what the run left: only the kept dead letters
                topic, subscription = retire.module_location(record)
                counts = await bus.counts(topic, subscription)
                assert (counts.active, counts.scheduled, counts.dead_lettered) == (0, 0, 0)
            (failer,) = [r for r in records if r.spec.name == "failer"]
            letters = await retire.parked_dead_letters(bus, failer, max_messages=10)
            assert [m.dead_letter_reason for m in letters] == ["ModuleFailed"]
        finally:
            await bus.aclose()
            await meta.aclose()

    asyncio.run(inspect())
    with sqlite3.connect(home / "bus.db") as db:  # no subscription but the parked one
        subscriptions = db.execute("SELECT topic, name FROM subscriptions").fetchall()
    assert [topic for topic, _ in subscriptions] == [retire.PARK_TOPIC], subscriptions


def test_ctrl_c_stops_at_once_cancels_the_job_and_names_the_flow(tmp_path: Path) -> None:
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    pid_file = tmp_path / "module.pid"
    file = _file(
        tmp_path / "pipeline.yaml",
        [
            {
                "name": "sleeper",
                "subscribes_to": "note.new",
                "command": ["python", "sleeper.py"],
                "env": {"PID_FILE": str(pid_file)},
            }
        ],
    )
    process = subprocess.Popen(
        [str(BIN / "ion-management"), "pipeline", "run", str(file)],
        env=_env(tmp_path),
        preexec_fn=sigint_reaches_child,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the module never started"
            time.sleep(0.1)
        module_pid = int(pid_file.read_text())
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert took < 4, f"took {took:.1f}s to stop"  # ~1 s here; 2 s on an idle machine
    assert "interrupted" in stderr and "ion trace flow -c " in stderr, stderr
    homes = list((tmp_path / "tmp").glob("ion-pipeline-*"))
    assert len(homes) == 1 and f"home: {homes[0]}" in stderr  # its own temporary home
    assert not list((homes[0] / "jobs").glob("sleeper-*"))  # the job folder is gone
    assert not _alive(module_pid), "the module's process still runs"
    assert not (tmp_path / "user" / ".ion").exists()


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet does not: it has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
