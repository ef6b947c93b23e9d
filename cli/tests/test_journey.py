"""The user journey, typed as a user types it: `ion up`, modules, an event, the flow, counts,
a dead letter listed and replayed, a module deleted. Modules are the media-classifiers example."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "media-classifiers"
PIPELINE = yaml.safe_load((EXAMPLES / "pipeline.yaml").read_text())


def _json(result: object) -> object:
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return json.loads(result.stdout)  # type: ignore[attr-defined]


def test_ion_up_writes_a_cli_config_for_mutual_tls(up: Any) -> None:
    config = yaml.safe_load((up.home / "cli.yaml").read_text())
    assert config["endpoint"] == up.endpoint
    for key in ("certfile", "keyfile", "cacertfile"):
        assert Path(config[key]).is_file()
    assert (up.home / "certs" / "ca-key.pem").stat().st_mode & 0o077 == 0


@pytest.mark.slow
def test_the_example_pipeline_through_the_cli(ion: Any) -> None:
    for spec in PIPELINE["modules"]:
        args = [
            "module",
            "create",
            "-n",
            spec["name"],
            "-i",
            spec["subscribes_to"],
            "-o",
            ",".join(spec["publishes"]),
            "--command",
            f"{sys.executable} {spec['command'][1]}",
            "--working-dir",
            str(EXAMPLES),
            "--retry-count",
            str(spec["retry_count"]),
        ]
        for key, value in spec["env"].items():
            args += ["--env", f"{key}={value}"]
        created = ion(*args)
        assert created.exit_code == 0, created.output
        assert created.stdout.startswith(f"created module {spec['name']}-")
    listed = _json(ion("module", "list", "-o", "json"))
    # Other tests of the session share this server: each pipeline module is listed exactly once.
    names = [m["name"] for m in listed]  # type: ignore[union-attr]
    assert all(names.count(spec["name"]) == 1 for spec in PIPELINE["modules"]), names
    table = ion("module", "list")
    assert "SUBSCRIBES TO" in table.stdout and "digit-classifier" in table.stdout

    event = _json(
        ion(
            "event",
            "create",
            "--type",
            "media.submitted",
            "--data",
            "count=6",
            "--data",
            "seed=7",
            "-o",
            "json",
        )
    )
    correlation_id = event["context"]["correlationId"]  # type: ignore[index]
    drawn = ion("trace", "flow", "-c", correlation_id, "--wait", "90")
    assert drawn.exit_code == 0, drawn.output
    for spec in PIPELINE["modules"]:
        assert spec["name"] in drawn.stdout
    assert "succeeded" in drawn.stdout and "SUCCEEDED" in drawn.stdout
    tree = _json(ion("trace", "flow", "-c", correlation_id, "-o", "json"))
    assert tree["settled"] and tree["succeeded"]  # type: ignore[index]
    flat = _json(ion("trace", "flow", "-c", correlation_id, "-o", "flat"))
    kinds = {d["context"]["documentType"] for d in flat}  # type: ignore[union-attr]
    assert kinds == {"eventMeta", "insight", "modulelogs"}

    got = _json(ion("module", "get", "-n", "ingest", "-o", "json"))
    assert got["status"] == "RUNNING" and got["succeeded"] == 1 and got["dispatchers_running"] == 1  # type: ignore[index]
    shown = ion("module", "get", "-n", "ingest")
    assert "succeeded" in shown.stdout and "1/1 dispatchers running" in shown.stdout


def test_a_dead_letter_is_listed_and_replayed_then_the_module_deleted(
    ion: Any, helpers: Any
) -> None:
    created = ion(
        "module",
        "create",
        "-n",
        "failer",
        "-i",
        "fail.me",
        "--command",
        f"{sys.executable} -c 'import time; time.sleep(1); raise SystemExit(3)'",
        "--retry-count",
        "0",
    )
    assert created.exit_code == 0, created.output
    event = _json(ion("event", "create", "--type", "fail.me", "-o", "json"))
    correlation_id = event["context"]["correlationId"]  # type: ignore[index]
    running = ion("trace", "flow", "-c", correlation_id)
    assert running.exit_code == 3, running.output  # not settled: the job sleeps 1 s
    drawn = ion("trace", "flow", "-c", correlation_id, "--wait", "30")
    assert drawn.exit_code == 1, drawn.output  # settled and failed
    assert "DEAD_LETTERED" in drawn.stdout and "exited with code 3" in drawn.stdout
    as_json = ion("trace", "flow", "-c", correlation_id, "-o", "json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["succeeded"] is False
    assert ion("trace", "flow", "-c", correlation_id, "-o", "flat").exit_code == 0  # as 2018
    lonely = _json(ion("event", "create", "--type", "nobody.listens", "-o", "json"))
    unheard = ion("trace", "flow", "-c", lonely["context"]["correlationId"])  # type: ignore[index]
    assert unheard.exit_code == 1 and "no subscribers" in unheard.stdout, unheard.output

    letters = _json(ion("event", "dlq", "list", "--module", "failer", "-o", "json"))
    [letter] = letters  # type: ignore[misc]
    assert letter["reason"] and letter["correlation_id"] == correlation_id
    replayed = ion(
        "event", "dlq", "replay", "--module", "failer", "--message-id", letter["message_id"]
    )
    assert replayed.exit_code == 0, replayed.output

    def dead_again() -> bool:
        got = _json(ion("module", "get", "-n", "failer", "-o", "json"))
        return got["dead_lettered"] == 2 and got["dead_letter_queue"] == 1  # type: ignore[index]

    helpers.poll(dead_again, timeout=30, what="the replayed event dead-lettered again")
    deleted = ion("module", "delete", "-n", "failer")
    assert deleted.exit_code == 0 and deleted.stdout.startswith("deleted module failer-")
    names = [m["name"] for m in _json(ion("module", "list", "-o", "json"))]  # type: ignore[union-attr]
    assert "failer" not in names
    history = _json(ion("module", "get", "-n", "failer", "-o", "json"))
    assert history["status"] == "DELETED" and history["dead_lettered"] == 2  # type: ignore[index]
    assert history["failed"] == 2  # type: ignore[index]  # both attempts failed (#10)


def test_event_with_a_file_then_get_and_peek(ion: Any, tmp_path: Path) -> None:
    created = ion("module", "create", "-n", "sink", "-i", "sink.in", "--command", "true")
    assert created.exit_code == 0, created.output
    stopped = ion("module", "delete", "-n", "sink")
    assert stopped.exit_code == 0
    attachment = tmp_path / "note.txt"
    attachment.write_text("hello")
    event = _json(
        ion(
            "event",
            "create",
            "--type",
            "nobody.listens",
            "--data",
            "a=b",
            "--file",
            str(attachment),
            "-o",
            "json",
        )
    )
    event_id = event["context"]["eventId"]  # type: ignore[index]
    got = _json(ion("event", "get", "--event-id", event_id, "-o", "json"))
    assert got["files"] == ["note.txt"] and got["data"]["a"] == "b"  # type: ignore[index]
    peeked = ion("event", "peek", "--module", "ingest", "-o", "json")
    assert peeked.exit_code == 0 and json.loads(peeked.stdout) == [], peeked.output
    dead = ion("event", "peek", "--module", "ingest", "--dead-letter")
    assert dead.exit_code == 0 and "MESSAGE ID" in dead.stdout


def test_up_stops_cleanly_on_sigterm(tmp_path: Path, helpers: Any) -> None:
    port = helpers.free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ion"),
            "up",
            "--port",
            str(port),
            "--front-api-port",
            str(helpers.free_port()),
        ],
        env=helpers.clean_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ion = helpers.ion_for(home=tmp_path, env={"ION_HOME": str(tmp_path)})
    try:
        helpers.poll(lambda: ion("module", "list").exit_code == 0, timeout=30, what="serving")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        assert b"stopped" in process.stderr.read()
