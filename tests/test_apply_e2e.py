"""`ion apply -f` / `ion delete -f` / `ion module delete` through the real CLI against a real
management server (`ion-management serve`, mutual TLS, on loopback).

One pipeline file: apply creates, re-applies as unchanged, updates in place; secret env is
never shown; a delete refuses while events are queued, --force cancels the running job and
keeps the queued events as dead letters; a plain delete drains a running job with progress.
The installed `ion` runs the refused delete (its exit code); the other commands run the same
CLI in-process, since each `ion` process costs seconds of start-up on a loaded machine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import yaml
from click.testing import CliRunner

from ion.cli.main import cli
from tests.e2e_support import Management, management_server

SLEEPER = """
import os, time
time.sleep(float(os.environ.get("SLEEP", "0")))
"""


def _pipeline(path: Path, *, sleep: str, mark: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "name": "apply-e2e",
                "root_event": "work.start",
                "modules": [
                    {
                        "name": "slow",
                        "subscribes_to": "work.start",
                        "publishes": ["work.done"],
                        "command": [sys.executable, "sleeper.py"],
                        "env": {"SLEEP": sleep, "MARK": mark},
                        "secretEnv": {"API_TOKEN": "hunter2"},
                        "max_in_flight": 1,
                        "retry_count": 0,
                    },
                    {
                        "name": "after",
                        "subscribes_to": "work.done",
                        "command": [sys.executable, "sleeper.py"],
                    },
                ],
            }
        )
    )
    return path


def _wait_for_a_job(server: Management, module: str, timeout: float = 15) -> None:
    jobs = server.settings.jobs_dir
    deadline = time.monotonic() + timeout
    while not any(jobs.glob(f"{module}-*")):
        assert time.monotonic() < deadline, f"no job of {module} started"
        time.sleep(0.1)


class Ion:
    """The `ion` CLI in-process, aimed at the server (stdout and stderr apart)."""

    def __init__(self, server: Management) -> None:
        self.env = {k: v for k, v in server.cli_env.items() if k.startswith("ION_")}

    def __call__(self, *args: str, code: int = 0) -> tuple[str, str]:
        done = CliRunner(env=self.env).invoke(cli, list(args))
        assert done.exit_code == code, (args, done.exit_code, done.stdout, done.stderr)
        return done.stdout, done.stderr


def test_apply_and_delete_a_pipeline_file_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    file = _pipeline(tmp_path / "pipeline.yaml", sleep="0", mark="v1")
    with management_server(tmp_path, {}) as server:
        ion = Ion(server)
        lines = ion("apply", "-f", str(file))[0].splitlines()
        assert lines[0].startswith("module/slow created as slow-"), lines
        assert lines[1].startswith("module/after created as after-"), lines

        again, _ = ion("apply", "-f", str(file), "-o", "json")
        assert [(r["name"], r["action"]) for r in json.loads(again)] == [
            ("slow", "unchanged"),
            ("after", "unchanged"),
        ]
        _pipeline(file, sleep="30", mark="v2")
        dry, _ = ion("apply", "-f", str(file), "--dry-run")
        assert "module/slow configured (env) (dry run)" in dry
        updated, _ = ion("apply", "-f", str(file))
        assert "module/slow configured (env)\n" in updated and "module/after unchanged" in updated

        got, _ = ion("module", "get", "-n", "slow", "-o", "yaml")
        assert yaml.safe_load(got)["module"]["env"] == {
            "SLEEP": "30",
            "MARK": "v2",
            "API_TOKEN": "***",
        }
        listed, _ = ion("module", "list", "-o", "json")
        assert "hunter2" not in got + listed and "***" in listed

        # One 30 s job runs, one event waits: a delete refuses and deletes nothing.
        flows = [_correlation(ion("event", "create", "--type", "work.start")[1]) for _ in "ab"]
        _wait_for_a_job(server, "slow")
        refused = server.ion("delete", "-f", str(file), check=False)
        assert refused.returncode == 1
        assert "nothing was deleted" in refused.stderr and "(1 queued)" in refused.stderr
        assert "--force" in refused.stderr

        started = time.monotonic()
        forced, _ = ion("delete", "-f", str(file), "--force")
        assert time.monotonic() - started < 10  # the 30 s job was cancelled, not waited for
        assert "module/slow deleted: 2 run(s) cancelled, 2 event(s) kept as dead letters" in (
            forced
        ), forced
        assert "module/after deleted\n" in forced
        assert json.loads(ion("module", "list", "-o", "json")[0]) == []
        assert not any(server.settings.jobs_dir.glob("slow-*"))

        letters = json.loads(ion("event", "dlq", "list", "-o", "json")[0])
        assert {d["reason"] for d in letters} == {"ModuleDeleted"}
        assert {d["correlation_id"] for d in letters} == set(flows)
        assert all(d["module"].startswith("slow-") for d in letters)
        tree, _ = ion("trace", "flow", "-c", flows[1], code=1)  # settled, not a success
        assert "CANCELLED" in tree and "RUNNING" not in tree, tree

        absent, _ = ion("delete", "-f", str(file))
        assert absent.splitlines() == ["module/slow absent", "module/after absent"]

        # A plain module delete drains a running job, printing progress, and loses nothing.
        ion(
            "module",
            "create",
            "-n",
            "drained",
            "-i",
            "work.start",
            "--command",
            f"{sys.executable} sleeper.py",
            "--working-dir",
            str(tmp_path),
            "--env",
            "SLEEP=2.5",
        )
        flow = _correlation(ion("event", "create", "--type", "work.start")[1])
        _wait_for_a_job(server, "drained")
        out, err = ion("module", "delete", "-n", "drained", "--drain-timeout", "30")
        assert "waiting for 1 running job(s)" in err, err
        assert "1 running job(s) finished first" in out, out
        tree, _ = ion("trace", "flow", "-c", flow)
        assert "drained  SUCCEEDED" in tree, tree


def _correlation(stderr: str) -> str:
    return stderr.rsplit("ion trace flow -c ", 1)[1].split()[0]
