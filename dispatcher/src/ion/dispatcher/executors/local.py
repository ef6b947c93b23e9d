"""The local executor: each job is a detached process group that outlives its dispatcher.

A job directory holds `job.json` (the request, with the pid and its kernel start time, to tell
a live job from a reused pid), `module.log` (stdout and stderr) and, once the module exits,
`exit_code`, written by a tiny `sh` wrapper just before it exits (so an empty file with the
process gone means it was killed mid-write). So a dispatcher restarted after `kill -9` finds a
job still running and adopts it, or finds its exit code, instead of starting it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ion.core import errors
from ion.core.clock import Clock, SystemClock
from ion.core.ports.executor import JobRequest, JobState, JobStatus
from ion.handler.supervisor import kill_group, module_environment

log = logging.getLogger(__name__)

# Runs the module, then records its exit code with a shell builtin; $0 is the exit file's path.
_WRAPPER = '"$@"; c=$?; printf %s "$c" > "$0"; exit "$c"'
_POLL = 0.02
_POLL_MAX = 0.25
KILL_GRACE = timedelta(seconds=2)


def _start_ticks(pid: int) -> int | None:
    """Kernel start time of a process (clock ticks since boot), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie has finished
    return int(fields[19])


def container_argv(runtime: str, job: JobRequest) -> list[str]:
    """Return `docker|podman run` argv running the module's image with its dir at /ion."""
    argv = [
        runtime,
        "run",
        "--rm",
        "--name",
        job.job_id,
        "-v",
        f"{job.base_dir}:/ion",
        "-e",
        "HANDLER_BASE_DIR=/ion",
    ]
    for key in job.env:
        argv += ["-e", key]
    return [*argv, job.image, *job.command]


class LocalExecutor:
    """Executor of jobs as local processes under one jobs directory."""

    def __init__(
        self,
        jobs_dir: Path,
        *,
        clock: Clock | None = None,
        container_runtime: str = "",
        keep_job_dirs: bool = False,
    ) -> None:
        self.jobs_dir = jobs_dir
        self._clock = clock or SystemClock()
        self._runtime = container_runtime or next(
            (r for r in ("docker", "podman") if shutil.which(r)), ""
        )
        self._keep = keep_job_dirs
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def job_dir(self, job_id: str) -> Path:
        """Directory of one job (its base dir for the module is `<job dir>/ion`)."""
        return self.jobs_dir / job_id

    def base_dir(self, job_id: str) -> Path:
        """The module's HANDLER_BASE_DIR for a job."""
        return self.job_dir(job_id) / "ion"

    def _argv(self, job: JobRequest) -> Sequence[str]:
        if job.command:
            return list(job.command)
        if job.image and self._runtime:
            return container_argv(self._runtime, job)
        raise errors.ConfigError(
            f"module {job.module!r} has only an image and no container runtime (docker or podman) "
            "is on PATH; give the module a command to run it as a local process"
        )

    async def submit(self, job: JobRequest) -> JobStatus:
        """Start the job, or return the status of the job with that id if it exists already."""
        directory = self.job_dir(job.job_id)
        if (directory / "job.json").exists():
            return await self.status(job.job_id)
        directory.mkdir(parents=True, exist_ok=True)
        argv = self._argv(job)
        started = self._clock.now()
        env = module_environment(job.base_dir, job.env)
        with (directory / "module.log").open("ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                _WRAPPER,
                str(directory / "exit_code"),
                *argv,
                env=env,
                cwd=job.working_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[job.job_id] = proc
        meta = {
            "job_id": job.job_id,
            "module": job.module,
            "argv": list(argv),
            "started_at": started.isoformat(),
            "deadline_seconds": job.max_execution.total_seconds(),
            "labels": dict(job.labels),
            "pid": proc.pid,
            "start_ticks": _start_ticks(proc.pid),
        }
        self._meta[job.job_id] = meta
        tmp = directory / "job.json.tmp"
        tmp.write_text(json.dumps(meta))
        tmp.replace(directory / "job.json")
        log.info("started job %s (pid %d)", job.job_id, proc.pid)
        return JobStatus(job_id=job.job_id, state=JobState.RUNNING, started_at=started)

    def _job_meta(self, job_id: str) -> dict[str, Any]:
        meta = self._meta.get(job_id)
        if meta is None:
            try:
                meta = json.loads((self.job_dir(job_id) / "job.json").read_text())
            except FileNotFoundError as err:
                raise errors.NotFoundError(
                    f"job {job_id!r} is unknown to the local executor"
                ) from err
        return meta

    def _exit_code(self, job_id: str) -> int | None:
        try:
            text = (self.job_dir(job_id) / "exit_code").read_text()
        except FileNotFoundError:
            return None
        return int(text) if text.strip() else None

    def _read_status(self, job_id: str) -> JobStatus:
        directory = self.job_dir(job_id)
        meta = self._job_meta(job_id)
        started = datetime.fromisoformat(meta["started_at"])
        timed_out = (directory / "timed_out").exists()
        code = self._exit_code(job_id)
        if code is not None:
            finished = datetime.fromtimestamp((directory / "exit_code").stat().st_mtime, UTC)
            state = JobState.SUCCEEDED if code == 0 and not timed_out else JobState.FAILED
            return JobStatus(
                job_id=job_id,
                state=state,
                exit_code=code,
                timed_out=timed_out,
                started_at=started,
                finished_at=finished,
            )
        if self._alive(job_id):
            return JobStatus(job_id=job_id, state=JobState.RUNNING, started_at=started)
        if timed_out:
            return JobStatus(
                job_id=job_id, state=JobState.FAILED, timed_out=True, started_at=started
            )
        return JobStatus(job_id=job_id, state=JobState.LOST, started_at=started)

    def _alive(self, job_id: str) -> bool:
        child = self._children.get(job_id)
        if child is not None:
            return child.returncode is None
        try:
            recorded = self._job_meta(job_id)
        except errors.NotFoundError:
            return False
        ticks = _start_ticks(int(recorded["pid"]))
        return ticks is not None and ticks == recorded["start_ticks"]

    async def status(self, job_id: str) -> JobStatus:
        """Return the job's status; raise NotFoundError if it was never submitted here."""
        return self._read_status(job_id)

    async def wait(self, job_id: str) -> JobStatus:
        """Wait for the job to end, killing its process group at the deadline."""
        meta = self._job_meta(job_id)
        deadline = datetime.fromisoformat(meta["started_at"]) + timedelta(
            seconds=meta["deadline_seconds"]
        )
        child = self._children.get(job_id)
        delay = _POLL
        while True:
            status = self._read_status(job_id)
            if status.state != JobState.RUNNING:
                break
            remaining = (deadline - self._clock.now()).total_seconds()
            if remaining <= 0:
                await self._kill(job_id, timed_out=True)
                continue
            if child is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, 5.0)):
                        await child.wait()
            else:
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, _POLL_MAX)
        self._children.pop(job_id, None)
        return status

    async def _kill(self, job_id: str, *, timed_out: bool) -> None:
        directory = self.job_dir(job_id)
        if timed_out:
            (directory / "timed_out").touch()
        try:
            pid = int(self._job_meta(job_id)["pid"])
        except errors.NotFoundError:
            return
        if not self._alive(job_id):
            return
        kill_group(pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        end = loop.time() + KILL_GRACE.total_seconds()
        while self._alive(job_id) and loop.time() < end:
            await asyncio.sleep(_POLL)
        kill_group(pid, signal.SIGKILL)
        child = self._children.get(job_id)
        if child is not None:
            await child.wait()
        else:
            while self._alive(job_id):
                await asyncio.sleep(_POLL)
        log.warning("killed job %s%s", job_id, " at its deadline" if timed_out else "")

    async def logs(self, job_id: str) -> bytes:
        """Return the module's combined stdout and stderr so far."""
        try:
            return (self.job_dir(job_id) / "module.log").read_bytes()
        except FileNotFoundError:
            return b""

    async def cancel(self, job_id: str) -> None:
        """Kill the job's process group; succeeds if it has finished."""
        if self.job_dir(job_id).exists():
            await self._kill(job_id, timed_out=False)

    async def list_jobs(self) -> list[JobStatus]:
        """Return every job under the jobs directory."""
        if not self.jobs_dir.is_dir():
            return []
        out = []
        for entry in sorted(self.jobs_dir.iterdir()):
            with contextlib.suppress(errors.NotFoundError):
                out.append(self._read_status(entry.name))
        return out

    async def delete(self, job_id: str) -> None:
        """Remove a finished job's directory (kept when `keep_job_dirs` is set)."""
        self._children.pop(job_id, None)
        self._meta.pop(job_id, None)
        if not self._keep:
            await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), ignore_errors=True)
