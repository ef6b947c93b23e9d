"""`ion flow list|get|cancel` and `ion logs` against `ion up` on loopback, as a user types them:
short ids accepted back, honest statuses (CANCELLED, NO_SUBSCRIBER), exit codes, one JSON shape
for a flow, a running job's log followed to its end."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ion.cli.main import main

MODULE = """
import json, os, pathlib, sys, time
base = pathlib.Path(os.environ["HANDLER_BASE_DIR"])
meta = base / "in" / "eventmeta.json"
data = {kv["key"]: kv["value"] for kv in json.loads(meta.read_text())} if meta.exists() else {}
print("hello from the module", flush=True)
if data.get("fail"):
    sys.exit(3)
print("a warning on stderr", file=sys.stderr, flush=True)
time.sleep(float(data.get("sleep", "0")))
print("goodbye from the module", flush=True)
"""


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def kind(ion: Any, tmp_path: Path) -> Iterator[str]:
    """A module `echo-<x>` subscribed to `<x>.new` (a type of this test only)."""
    name = f"h2{uuid.uuid4().hex[:6]}"
    (tmp_path / "echo.py").write_text(MODULE)
    _ok(
        ion(
            "module",
            "create",
            "-n",
            f"echo-{name}",
            "-i",
            f"{name}.new",
            "--command",
            f"{sys.executable} echo.py",
            "--working-dir",
            str(tmp_path),
            "--retry-count",
            "0",
        )
    )
    yield name
    # The `ion up` server is shared by the session's CLI tests: leave no module behind.
    _ok(ion("module", "delete", "-n", f"echo-{name}", "--force"))


def _raise(ion: Any, event_type: str, *data: str) -> str:
    args = ["event", "create", "--type", event_type, "-o", "json"]
    for pair in data:
        args += ["--data", pair]
    return str(json.loads(_ok(ion(*args)).stdout)["context"]["correlationId"])


def test_a_flow_listed_got_by_short_id_and_its_logs(ion: Any, kind: str) -> None:
    flow_id = _raise(ion, f"{kind}.new", "sleep=0")
    short = flow_id[:8]
    watched = ion("flow", "get", short, "--watch", "--interval", "0.2", "-o", "json")
    assert watched.exit_code == 0, watched.output
    got = json.loads(watched.stdout)
    assert (got["correlation_id"], got["status"], got["succeeded"]) == (flow_id, "SUCCEEDED", True)
    # one JSON shape: `trace flow` (2018's command) prints the same model, short id too
    traced = _ok(ion("trace", "flow", "-c", short, "-o", "json"))
    assert json.loads(traced.stdout) == got
    tree = _ok(ion("flow", "get", flow_id))
    assert f"flow {flow_id}  succeeded" in tree.stdout and f"echo-{kind}" in tree.stdout

    listed = json.loads(_ok(ion("flow", "list", "--type", f"{kind}.new", "-o", "json")).stdout)
    [item] = listed["items"]
    assert (item["correlation_id"], item["status"], item["runs"]) == (
        flow_id,
        "SUCCEEDED",
        {"SUCCEEDED": 1},
    )
    assert item["modules"] == [f"echo-{kind}"] and listed["next_cursor"] == ""
    table = _ok(ion("flow", "list", "--type", f"{kind}.new", "--since", "10m"))
    assert short in table.stdout and flow_id not in table.stdout and "SUCCEEDED" in table.stdout
    assert flow_id in _ok(ion("flow", "list", "--type", f"{kind}.new", "-o", "wide")).stdout
    earlier = _ok(ion("flow", "list", "--type", f"{kind}.new", "--until", "1h", "-o", "json"))
    assert json.loads(earlier.stdout)["items"] == []
    none = _ok(ion("flow", "list", "--type", f"{kind}.new", "--status", "running", "-o", "json"))
    assert json.loads(none.stdout)["items"] == []

    logs = _ok(ion("logs", short))
    assert "hello from the module" in logs.stdout and "a warning on stderr" in logs.stdout
    [attempt] = got["roots"][0]["triggered"][0]["attempts"]
    one = _ok(ion("logs", attempt["id"][: len(f"echo-{kind}") + 6]))  # an attempt id's prefix
    assert "goodbye from the module" in one.stdout and "==>" not in one.stdout
    latest = _ok(ion("logs", "--module", f"echo-{kind}"))
    assert "hello from the module" in latest.stdout


def test_logs_follow_a_running_attempt_to_its_end(ion: Any, kind: str, helpers: Any) -> None:
    flow_id = _raise(ion, f"{kind}.new", "sleep=2")
    helpers.poll(
        lambda: "hello from the module" in ion("logs", flow_id).stdout, timeout=30, what="start"
    )
    followed = _ok(ion("logs", flow_id, "-f", "--interval", "0.2"))
    text = followed.stdout
    assert text.count("hello from the module") == 1
    assert text.index("hello from the module") < text.index("goodbye from the module")
    assert "ended SUCCEEDED" in followed.stderr


def test_cancel_a_running_flow_and_the_honest_statuses(ion: Any, kind: str, helpers: Any) -> None:
    flow_id = _raise(ion, f"{kind}.new", "sleep=60")
    helpers.poll(
        lambda: "hello from the module" in ion("logs", flow_id).stdout, timeout=30, what="start"
    )
    running = _ok(ion("flow", "list", "--type", f"{kind}.new", "--status", "RUNNING"))
    assert flow_id[:8] in running.stdout
    assert ion("flow", "get", flow_id).exit_code == 3  # not settled
    cancelled = _ok(ion("flow", "cancel", flow_id[:8]))
    assert cancelled.stdout.startswith(f"cancelled flow {flow_id}: 1 run(s) cancelled")
    tree = ion("flow", "get", flow_id)
    assert tree.exit_code == 1 and "CANCELLED" in tree.stdout, tree.output
    helpers.poll(
        lambda: (
            "the flow was cancelled while it ran"
            in json.dumps(json.loads(ion("flow", "get", flow_id, "-o", "json").stdout))
        ),
        timeout=30,
        what="the job killed and recorded",
    )
    listed = _ok(
        ion("flow", "list", "--status", "CANCELLED", "--type", f"{kind}.new", "-o", "json")
    )
    assert [f["correlation_id"] for f in json.loads(listed.stdout)["items"]] == [flow_id]
    again = _ok(ion("flow", "cancel", flow_id))
    assert "had settled already (CANCELLED)" in again.stdout

    nobody = _raise(ion, f"{kind}.nobody")
    shown = ion("flow", "get", nobody, "-o", "json")
    assert shown.exit_code == 1 and json.loads(shown.stdout)["status"] == "NO_SUBSCRIBER"
    assert "no module subscribes" in ion("flow", "get", nobody).stdout
    # nothing ran and nothing will: following its logs ends at once
    none = _ok(ion("logs", nobody[:8], "-f", "--interval", "0.2"))
    assert none.stdout == "" and "no job attempts yet" in none.stderr


def test_the_installed_entry_point_keeps_the_exit_codes(
    ion: Any, kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `ion` runs main(), where click returns (not raises) a command's exit code
    nobody = _raise(ion, f"{kind}.nobody")
    for key in [k for k in os.environ if k.startswith("ION_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ION_HOME", str(ion.home))
    assert main(["flow", "get", nobody]) == 1
    assert main(["trace", "flow", "-c", nobody]) == 1
    assert main(["flow", "list", "--type", f"{kind}.nobody"]) == 0
    assert nobody[:8] in capsys.readouterr().out


def test_ids_are_refused_clearly(ion: Any, kind: str) -> None:
    stem = f"{kind}-amb"
    for i in range(2):
        _ok(ion("event", "create", "--type", f"{kind}.new", "--correlation-id", f"{stem}-{i}"))
    ambiguous = ion("flow", "get", stem)
    assert ambiguous.exit_code == 1
    assert "is ambiguous" in ambiguous.stderr
    assert f"{stem}-0" in ambiguous.stderr and f"{stem}-1" in ambiguous.stderr
    missing = ion("flow", "cancel", f"{kind}-nothing")
    assert missing.exit_code == 1 and "no flow with correlation id" in missing.stderr
    assert "Traceback" not in missing.output
    bad = ion("flow", "list", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since" in bad.output
    assert ion("logs").exit_code == 2
    cursor = ion("flow", "list", "--continue", "nonsense")
    assert cursor.exit_code == 1 and "cursor" in cursor.stderr


def test_short_module_and_dead_letter_ids_are_accepted(ion: Any, kind: str, helpers: Any) -> None:
    listed = json.loads(_ok(ion("module", "list", "-o", "json")).stdout)
    [module_id] = [m["id"] for m in listed if m["name"] == f"echo-{kind}"]
    got = json.loads(_ok(ion("module", "get", "-n", module_id[:-2], "-o", "json")).stdout)
    assert got["name"] == module_id
    flow_id = _raise(ion, f"{kind}.new", "fail=1")
    watched = ion("flow", "get", flow_id, "--watch", "--interval", "0.2", "-o", "json")
    assert watched.exit_code == 1 and json.loads(watched.stdout)["status"] == "FAILED"
    event_id = json.loads(watched.stdout)["roots"][0]["event_id"]
    replayed = _ok(
        ion("event", "dlq", "replay", "--module", module_id, "--message-id", event_id[:8])
    )
    assert f"replayed {event_id[:8]}" in replayed.stdout

    def attempts() -> int:
        shown = json.loads(ion("flow", "get", flow_id, "-o", "json").stdout)
        return len(shown["roots"][0]["triggered"][0]["attempts"])

    helpers.poll(lambda: attempts() == 2, timeout=30, what="the replayed event run again")
