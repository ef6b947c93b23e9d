"""Flows as objects through the real `ion` CLI against a real management server
(`ion-management serve`, mutual TLS, on loopback): `flow list`, `flow get --watch` stopped with
Ctrl-C, `logs -f` following a running job, `flow cancel` of a running and of a queued flow, and the
cancellations in the store for any other process to read.

The installed `ion` runs the commands whose process behaviour matters (a signal and its exit
code, a follow); the rest run the same CLI in-process, since each `ion` process costs seconds
here (cli/tests/test_flow_commands.py holds the entry point's exit codes).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ion.cli.main import cli
from ion.core import FlowPage, FlowQuery, FlowStatus
from ion.core.backends import open_meta
from tests.e2e_support import BIN, Management, management_server, sigint_reaches_child

MODULE = """
import json, os, pathlib, time
base = pathlib.Path(os.environ["HANDLER_BASE_DIR"])
meta = base / "in" / "eventmeta.json"
data = {kv["key"]: kv["value"] for kv in json.loads(meta.read_text())} if meta.exists() else {}
(pathlib.Path(os.environ["PIDS"]) / str(os.getpid())).touch()
print("started", flush=True)
time.sleep(float(data.get("sleep", "0")))
print("finished", flush=True)
"""


def _ion(server: Management, *args: str, code: int = 0) -> Any:
    done = CliRunner(env=server.cli_env).invoke(cli, list(args))
    assert done.exit_code == code, (args, done.exit_code, done.stdout, done.stderr)
    return done


def _until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(0.2)


def _raise(server: Management, *data: str) -> str:
    args = ["event", "create", "--type", "work.start", "-o", "json"]
    for pair in data:
        args += ["--data", pair]
    return str(json.loads(_ion(server, *args).stdout)["context"]["correlationId"])


def _listed(server: Management, *filters: str) -> list[str]:
    listed = json.loads(_ion(server, "flow", "list", *filters, "-o", "json").stdout)
    return [str(f["correlation_id"]) for f in listed["items"]]


def test_list_watch_follow_and_cancel_flows_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "work.py").write_text(MODULE)
    pids = tmp_path / "pids"
    pids.mkdir()
    with management_server(tmp_path, {}) as server:
        _ion(
            server,
            "module",
            "create",
            "-n",
            "work",
            "-i",
            "work.start",
            "--command",
            f"{sys.executable} work.py",
            "--working-dir",
            str(tmp_path),
            "--env",
            f"PIDS={pids}",
            "--max-in-flight",
            "1",
            "--retry-count",
            "0",
        )
        done = _raise(server, "sleep=0")
        _until(lambda: _listed(server, "--status", "SUCCEEDED") == [done], "the first flow")
        running = _raise(server, "sleep=60")
        _until(lambda: len(list(pids.iterdir())) == 2, "the long job started")
        queued = _raise(server, "sleep=0")  # one job at a time: it waits
        assert _listed(server, "--status", "RUNNING") == [queued, running]
        table = _ion(server, "flow", "list").stdout
        assert all(f[:8] in table for f in (done, running, queued))

        # `flow get --watch` in a process of its own, stopped with Ctrl-C: the flow goes on
        watch = subprocess.Popen(
            [str(BIN / "ion"), "flow", "get", running[:8], "--watch"],
            env=server.cli_env,
            preexec_fn=sigint_reaches_child,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watch.stderr is not None
        assert f"watching flow {running}" in watch.stderr.readline()
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=30)
        assert watch.returncode == 3, err
        assert f"ion flow cancel {running[:8]}" in err and "Traceback" not in err

        # `logs -f` follows the running job until the cancel ends it
        follow = subprocess.Popen(
            [str(BIN / "ion"), "logs", running, "-f", "--interval", "0.2"],
            env=server.cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follow.stdout is not None
        assert "==> work attempt 1 (RUNNING)" in follow.stdout.readline()
        assert follow.stdout.readline() == "started\n"
        _ion(server, "flow", "cancel", queued[:8])
        cancelled = _ion(server, "flow", "cancel", running[:8]).stdout
        assert cancelled.startswith(f"cancelled flow {running}: 1 run(s) cancelled")
        out, err = follow.communicate(timeout=60)
        assert follow.returncode == 0, err
        assert "finished" not in out and "ended CANCELLED" in err
        for pid_file in pids.iterdir():  # the killed module, and nothing more ran
            _until(lambda p=pid_file: not Path(f"/proc/{p.name}").exists(), "module killed")
        assert len(list(pids.iterdir())) == 2

        shown = _ion(server, "flow", "get", queued[:8], code=1)
        assert "cancelled" in shown.stdout and "CANCELLED" in shown.stdout
        traced = _ion(server, "trace", "flow", "-c", done, "-o", "flat")  # 2018's command
        assert json.loads(traced.stdout)[0]["context"]["correlationId"] == done
        # The cancellations are in the store: another process reading it sees them.
        page = asyncio.run(_cancelled(server))
        assert sorted(f.correlation_id for f in page.items) == sorted([running, queued])
        assert len(list(pids.iterdir())) == 2


async def _cancelled(server: Management) -> FlowPage:
    meta = open_meta(server.settings.meta_url)
    try:
        return await meta.list_flows(FlowQuery(status=[FlowStatus.CANCELLED]))
    finally:
        await meta.aclose()
