"""The local executor: prepare and commit in this process, the module as a detached process group.

A job's directory (`<jobs dir>/<job id>`) records each step before it happens, so a process
that restarts after `kill -9` at any point knows where the job is:

- `job.json`: the request, created exclusively before anything else (a second `submit` of the
  same id starts nothing); the one process driving the job through its phases holds its flock.
  Usually the whole directory appears at once: a spare one, made ahead of need with the empty
  tree and empty files (which mean "not yet" to every reader), gets the request and is renamed
  into place (see `_spares`);
- `module.lock`: after prepare and before the module starts, locked and filled with the run's
  record (a fresh run token, its start and deadline); the module inherits the lock, so it stays
  locked exactly while any process of the module's run is alive, whoever started it;
- `run-<token>.started` (the module's pid) and `run-<token>.exit` (its exit code), written by a
  tiny `sh` wrapper around the module; a token per run, so a stale exit code is never read;
- `result.json`: the job's outcome, written once the attempt's log and commit are stored.

So a restarted process adopts a module that is still running (the lock is held), commits one
that exited but was not committed, reports one that vanished without an exit code, and starts
the module only if no run of it ever began. The module never runs twice for one job, and
commit never runs while a process of the module is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from opentelemetry import trace

from ion.core import errors, failpoints, telemetry
from ion.core.clock import Clock, SystemClock
from ion.core.contract import JobLayout
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus
from ion.core.ports.executor import JobRequest, JobResult, JobState
from ion.core.ports.meta import MetadataStore
from ion.dispatcher.executors._spares import SparePool
from ion.handler.finish import Attempt, ModuleEnd, finish_job
from ion.handler.job import HandlerJob
from ion.handler.prepare import build_layout, prepare
from ion.handler.supervisor import kill_group, module_environment

log = logging.getLogger(__name__)
tracer = trace.get_tracer("ion.dispatcher")

# $0 is the run's marker prefix: record the process group's id, run the module, then record
# its exit code with a shell builtin (an empty file with no process means killed mid-write).
_WRAPPER = 'printf %s "$$" > "$0.started"; "$@"; c=$?; printf %s "$c" > "$0.exit"; exit "$c"'
_POLL = 0.02
_POLL_MAX = 0.25
KILL_GRACE = timedelta(seconds=2)
LINGER_GRACE = timedelta(seconds=5)
"""How long processes a module left behind may take to die before the attempt fails."""
_RUNTIME_ENV = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "CONTAINER_HOST",
    "CONTAINERS_CONF",
    "XDG_RUNTIME_DIR",
)
"""What the docker or podman client needs to find its engine (never passed into the container)."""
SPARE_DIRS = 8
"""Job directories kept ready ahead of need (see `_spares`)."""


def container_argv(
    runtime: str, job: JobRequest, base_dir: Path, *, user: str | None = None
) -> list[str]:
    """Return `docker|podman run` argv running the module's image with its dir at /ion.

    `user` (`uid:gid`) overrides the image's user; None keeps the image's own.
    """
    argv = [runtime, "run", "--rm", "--name", job.job_id]
    if user:
        argv += ["--user", user]
    argv += ["-v", f"{base_dir}:/ion", "-e", "HANDLER_BASE_DIR=/ion"]
    for key in job.spec.environment:
        argv += ["-e", key]
    return [*argv, job.spec.image, *job.spec.command]


def local_command(command: Sequence[str]) -> list[str]:
    """The module's command as a local process runs it: `python` (or `python3`) first means
    Ion's own interpreter, so modules share its packages. Only here: a module that runs in a
    container (Kubernetes, Azure Batch) keeps `python`, its image's."""
    if command and command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return list(command)


def _container_user(base_dir: Path) -> str | None:
    """Who a module's container runs as, so that it can write its job directory at /ion.

    A dispatcher running as a user has the container run as that user (`--user uid:gid`): the
    module's files are then the dispatcher's to commit and delete, whatever user the image
    names. A dispatcher running as root keeps the image's own user (Ion's images run as 10001;
    2018 images often as root) and opens what a module writes (`out/`, `out/data/`,
    `out/events/`, `out/insights.json`) to every user instead; the rest stays root's.
    """
    uid = os.geteuid()
    if uid != 0:
        return f"{uid}:{os.getegid()}"
    layout = JobLayout(base_dir)
    for directory in (layout.out_data.parent, layout.out_data, layout.out_events):
        os.chmod(directory, 0o777)
    with contextlib.suppress(FileNotFoundError):  # the layout's empty insights file
        os.chmod(layout.out_insights, 0o666)
    return None


def _write_whole(path: Path, text: str) -> None:
    """Write a file in one write; a reader treats a part (killed mid-write) as no file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _rewrite(fd, text.encode())
    finally:
        os.close(fd)


def _rewrite(fd: int, data: bytes) -> None:
    """Replace an open file's content with `data`.

    An empty file (a spare's) is not truncated: on ext4 a truncate to zero makes the last
    close of the file flush it to disk at once (`auto_da_alloc`), which costs a write-out.
    """
    if os.fstat(fd).st_size:
        os.ftruncate(fd, 0)
    offset = 0
    while offset < len(data):
        offset += os.pwrite(fd, data[offset:], offset)


def _spawn(
    argv: list[str], *, env: dict[str, str], cwd: Path | None, output: int, keep: int
) -> subprocess.Popen[bytes]:
    """Start a process in a session of its own, output to `output`, `keep` inherited.

    As asyncio's subprocess API does, on the event loop (a vfork and exec).
    """
    return subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=(keep,),
    )


class _Child:
    """The module's wrapper process, its end awaited without a thread where Linux allows.

    asyncio's child watcher starts a thread per process to block in `waitpid`; a pidfd becomes
    readable when the process exits, so the event loop itself sees it end.
    """

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        loop = asyncio.get_running_loop()
        self._ended: asyncio.Future[int] = loop.create_future()
        try:
            fd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # not Linux, or an old kernel: a thread waits
            waiting = loop.run_in_executor(None, popen.wait)
            waiting.add_done_callback(self._waited)
            return

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self._set(popen.wait())  # reaps it; it has exited, so this does not block

        loop.add_reader(fd, exited)

    def _waited(self, waiting: asyncio.Future[int]) -> None:
        if not waiting.cancelled() and waiting.exception() is None:
            self._set(waiting.result())

    def _set(self, code: int) -> None:
        if not self._ended.done():
            self._ended.set_result(code)

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended and been reaped, else None."""
        return self._ended.result() if self._ended.done() else None

    async def wait(self) -> int:
        """Wait for the process to end; return its exit status."""
        return await asyncio.shield(self._ended)


def _write_atomic(path: Path, text: str) -> None:
    """Write a file whole (a reader sees the old content or the new, never a part)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    tmp.replace(path)


def _create_exclusive(path: Path, text: str) -> bool:
    """Create `path` with `text` unless a whole one exists; False if it did.

    A file left half-written by a process killed while writing it is replaced.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        if _read_json(path) is not None:
            return False
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None if it is missing or not whole (killed mid-write)."""
    try:
        value = json.loads(path.read_bytes() or b"null")
    except FileNotFoundError:
        return None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _lock_held(path: Path) -> bool:
    """True if another open file holds `path`'s flock (a live process of the job)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also releases a lock this probe took
    return False


class _Job:
    """Paths of one job's directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.request = directory / "job.json"
        self.module_lock = directory / "module.lock"
        self.log = directory / "module.log"
        self.result = directory / "result.json"
        self.base = directory / "ion"

    def run(self, token: str, suffix: str) -> Path:
        return self.dir / f"run-{token}.{suffix}"


def find_container_runtime(configured: str = "") -> str:
    """Return the container runtime image modules run with: `configured`, else `docker` or
    `podman` if on PATH, else "" (image-only modules cannot run here)."""
    return configured or next((r for r in ("docker", "podman") if shutil.which(r)), "")


class LocalExecutor:
    """Executor of jobs on this machine, under one jobs directory."""

    def __init__(
        self,
        jobs_dir: Path,
        *,
        bus: EventBus,
        blobs: BlobStore,
        meta: MetadataStore,
        clock: Clock | None = None,
        container_runtime: str = "",
        keep_job_dirs: bool = False,
        url_lifetime: timedelta = timedelta(days=7),
    ) -> None:
        self.jobs_dir = jobs_dir
        self._bus, self._blobs, self._meta = bus, blobs, meta
        self._clock = clock or SystemClock()
        self._runtime = find_container_runtime(container_runtime)
        self._keep = keep_job_dirs
        self._url_lifetime = url_lifetime
        self._drivers: dict[str, asyncio.Task[JobResult]] = {}
        self._children: dict[str, _Child] = {}
        self._cleanups: set[asyncio.Task[None]] = set()
        self._spares = SparePool(
            jobs_dir,
            size=SPARE_DIRS,
            make_layout=lambda directory: build_layout(JobLayout(directory / "ion")),
        )
        self._fresh: set[str] = set()
        """Jobs whose directory this process made from a spare and has not prepared yet."""
        self._processes_only: set[str] = set()
        """Jobs driven here whose module runs as a process (no container): their directory
        may be recycled as a spare once they are deleted."""

    def job_dir(self, job_id: str) -> Path:
        """Directory of one job (the module's base dir is `<job dir>/ion`)."""
        return self.jobs_dir / job_id

    def _job(self, job_id: str) -> _Job:
        return _Job(self.job_dir(job_id))

    # -- the port ---------------------------------------------------------------------------

    async def submit(self, job: JobRequest) -> JobResult:
        """Start the job, or return the state of the job with that id if it exists already."""
        paths = self._job(job.job_id)
        if job.job_id in self._drivers:
            return await self.status(job.job_id)
        try:
            created = self._create(paths, job)  # a write and a rename: cheaper than a thread hop
        except OSError as err:
            raise errors.TransientError(
                f"could not record job {job.job_id}: {_os_error_text(err)}"
            ) from err
        if not created:
            return await self.status(job.job_id)
        self._start_driver(job)
        return JobResult(job_id=job.job_id, state=JobState.RUNNING, started_at=self._clock.now())

    def _create(self, paths: _Job, job: JobRequest) -> bool:
        request = job.model_dump_json()
        spare = self._spares.take()
        if spare is not None:
            try:
                _write_whole(spare / paths.request.name, request)
                # Fails if a job of that id has a directory with anything in it (a second
                # submit); replaces an empty one (left by a process killed right after mkdir).
                os.rename(spare, paths.dir)
            except OSError:
                self._spares.discard(spare)
            else:
                self._fresh.add(job.job_id)
                return True
        paths.dir.mkdir(parents=True, exist_ok=True)
        return _create_exclusive(paths.request, request)

    async def status(self, job_id: str) -> JobResult:
        """Return the job's state; raise NotFoundError if it was never submitted here."""
        paths = self._job(job_id)
        result = _read_json(paths.result)
        if result is not None:
            return JobResult.model_validate(result)
        if job_id not in self._drivers and _read_json(paths.request) is None:
            # Never submitted, or its request was cut short by a kill: submitting starts it.
            raise errors.NotFoundError(f"job {job_id!r} is unknown to the local executor")
        run = _read_json(paths.module_lock)
        started = datetime.fromisoformat(run["started_at"]) if run else None
        return JobResult(job_id=job_id, state=JobState.RUNNING, started_at=started)

    async def wait(self, job_id: str) -> JobResult:
        """Wait for the job to finish, resuming it if no process here is driving it."""
        driver = self._drivers.get(job_id)
        if driver is not None and driver.done() and not driver.cancelled() and driver.exception():
            driver = None  # it failed (a backend was down): resume it from its directory
        if driver is None:
            paths = self._job(job_id)
            result = _read_json(paths.result)
            if result is not None:
                return JobResult.model_validate(result)
            request = _read_json(paths.request)
            if request is None:
                raise errors.NotFoundError(f"job {job_id!r} is unknown to the local executor")
            driver = self._start_driver(JobRequest.model_validate(request))
        return await driver

    async def logs(self, job_id: str) -> bytes:
        """Return the module's combined stdout and stderr so far (and Ion's notes)."""
        try:
            return await asyncio.to_thread(self._job(job_id).log.read_bytes)
        except FileNotFoundError:
            return b""

    async def cancel(self, job_id: str) -> None:
        """Kill the job's module; the job then fails with reason `cancelled`."""
        paths = self._job(job_id)
        run = _read_json(paths.module_lock)
        if run is not None:
            await self._kill(paths, run["token"], why="cancelled")

    async def list_jobs(self) -> list[JobResult]:
        """Return every job under the jobs directory."""
        if not self.jobs_dir.is_dir():
            return []
        out = []
        for entry in sorted(self.jobs_dir.iterdir()):
            if entry.name.startswith("."):  # spares (job ids never start with a dot)
                continue
            with contextlib.suppress(errors.NotFoundError):
                out.append(await self.status(entry.name))
        return out

    async def delete(self, job_id: str) -> None:
        """Forget a finished job; its directory is removed in the background (unless kept)."""
        self._drivers.pop(job_id, None)
        self._children.pop(job_id, None)
        self._fresh.discard(job_id)
        processes_only = job_id in self._processes_only
        self._processes_only.discard(job_id)
        if self._keep:
            return
        if processes_only and self._spares.recycle(self.job_dir(job_id)):
            return
        task = asyncio.create_task(
            asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), ignore_errors=True)
        )
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def aclose(self) -> None:
        """Wait for background clean-ups; jobs still running are left to be adopted later."""
        await self._spares.aclose()
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    # -- driving a job through prepare, module, commit ----------------------------------------

    def _start_driver(self, job: JobRequest) -> asyncio.Task[JobResult]:
        task = asyncio.create_task(self._drive(job), name=f"job-{job.job_id}")
        self._drivers[job.job_id] = task
        return task

    async def _drive(self, job: JobRequest) -> JobResult:
        paths = self._job(job.job_id)
        try:
            async with self._holding(paths.request):
                result = _read_json(paths.result)
                if result is not None:  # another process finished it while we waited
                    return JobResult.model_validate(result)
                return await self._run(job, paths)
        except OSError as err:  # the job's directory could not be written (a full disk?)
            raise errors.TransientError(
                f"job {job.job_id} could not go on: {_os_error_text(err)}"
            ) from err
        finally:
            self._children.pop(job.job_id, None)

    @contextlib.asynccontextmanager
    async def _holding(self, lock: Path) -> AsyncIterator[None]:
        """Hold `lock` (waiting while another process drives the job)."""
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
        try:
            delay = _POLL
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _POLL_MAX)
            yield
        finally:
            os.close(fd)

    async def _run(self, job: JobRequest, paths: _Job) -> JobResult:
        if job.spec.command:
            self._processes_only.add(job.job_id)
        handler_job = HandlerJob.for_request(job, paths.base)
        run = _read_json(paths.module_lock)
        ended = await self._resume(job, paths, run) if run is not None else None
        prepare_error = ""
        if ended is None and run is None:
            fresh = job.job_id in self._fresh
            self._fresh.discard(job.job_id)
            try:
                await prepare(handler_job, blobs=self._blobs, meta=self._meta, layout_ready=fresh)
            except errors.IonError as err:
                prepare_error = str(err) or type(err).__name__
            except OSError as err:
                prepare_error = _os_error_text(err)
            except Exception as err:  # a bug, not the input's fault: fail the attempt, say why
                log.exception("prepare of %s failed unexpectedly", job.job_id)
                prepare_error = f"unexpected {type(err).__name__}: {err}"
        if ended is None and not prepare_error:
            failpoints.reach("local.prepared")
            with tracer.start_as_current_span(
                "run",
                attributes={
                    **telemetry.event_attributes(job.event, module=job.spec.name),
                    telemetry.ATTEMPT: job.attempt,
                    telemetry.JOB_ID: job.job_id,
                    telemetry.EXECUTOR: "local",
                },
            ):
                ended = await self._start_module(job, paths)
        failpoints.reach("local.module-ended")
        run = _read_json(paths.module_lock)
        attempt = Attempt(
            job_id=job.job_id,
            number=job.attempt,
            log_path=paths.log,
            started_at=datetime.fromisoformat(run["started_at"]) if run else self._clock.now(),
        )
        result = await finish_job(
            handler_job,
            attempt,
            ended=ended,
            prepare_error=prepare_error,
            blobs=self._blobs,
            meta=self._meta,
            bus=self._bus,
            url_lifetime=self._url_lifetime,
        )
        failpoints.reach("local.finished")
        _write_whole(paths.result, result.model_dump_json())
        log.info("job %s finished: %s %s", job.job_id, result.state, result.reason[:200])
        return result

    async def _resume(self, job: JobRequest, paths: _Job, run: dict[str, Any]) -> ModuleEnd | None:
        """Find how a run another process started ended (None if it never began)."""
        token = run["token"]
        begun = (
            paths.run(token, "started").exists()
            or paths.run(token, "exit").exists()
            or _lock_held(paths.module_lock)
        )
        if not begun:
            log.info("job %s: the module never started; starting it", job.job_id)
            return None
        log.info("adopting job %s (run %s)", job.job_id, token)
        return await self._watch(job, paths, run, child=None)

    def _argv(self, job: JobRequest, paths: _Job) -> Sequence[str]:
        if job.spec.command:
            return local_command(job.spec.command)
        if job.spec.image and self._runtime:
            return container_argv(self._runtime, job, paths.base, user=_container_user(paths.base))
        raise errors.ConfigError(
            f"module {job.spec.name!r} has only an image and no container runtime (docker or "
            "podman) is on PATH; give the module a command to run it as a local process"
        )

    def _environment(self, job: JobRequest, paths: _Job) -> dict[str, str]:
        """The module's environment; for `docker|podman run`, also where its engine is.

        The engine's variables reach only the client: the container gets the module's own
        configuration (`-e KEY` for each key of its env) and HANDLER_BASE_DIR.
        """
        env = module_environment(paths.base, job.spec.environment)
        if not job.spec.command and job.spec.image and self._runtime:
            for key in _RUNTIME_ENV:
                if key in os.environ and key not in env:
                    env[key] = os.environ[key]
        return env

    async def _start_module(self, job: JobRequest, paths: _Job) -> ModuleEnd:
        try:
            argv = self._argv(job, paths)
        except errors.ConfigError as err:
            return ModuleEnd(error=f"could not start the module: {err}")
        cwd = Path(job.spec.working_dir) if job.spec.working_dir else job.working_dir
        if cwd is not None and not cwd.is_dir():
            return ModuleEnd(
                error=f"could not start the module: its working directory {str(cwd)!r} "
                "does not exist (fix the module's working_dir, or the pipeline file's location)"
            )
        token = uuid.uuid4().hex[:12]
        run = {
            "token": token,
            "started_at": self._clock.now().isoformat(),
            "deadline_seconds": job.max_execution.total_seconds(),
            "argv": list(argv),
        }
        marker = paths.dir / f"run-{token}"
        lock_fd = os.open(paths.module_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Recorded before the spawn: a restart that finds no trace of this run may start it.
            _rewrite(lock_fd, json.dumps(run).encode())
            failpoints.reach("local.module-recorded")
            try:
                log_fd = os.open(
                    paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
                )
                try:
                    proc = _Child(
                        _spawn(
                            ["/bin/sh", "-c", _WRAPPER, str(marker), *argv],
                            env=self._environment(job, paths),
                            cwd=cwd,
                            output=log_fd,
                            keep=lock_fd,
                        )
                    )
                finally:
                    os.close(log_fd)
            except OSError as err:
                return ModuleEnd(error=f"could not start the module: {_os_error_text(err)}")
        finally:
            os.close(lock_fd)  # the module's processes hold the lock from here on
        self._children[job.job_id] = proc
        failpoints.reach("local.spawned")
        log.info("started job %s (pid %d)", job.job_id, proc.pid)
        return await self._watch(job, paths, run, child=proc)

    async def _watch(
        self,
        job: JobRequest,
        paths: _Job,
        run: dict[str, Any],
        *,
        child: _Child | None,
    ) -> ModuleEnd:
        """Wait for the run to end, killing it at its deadline; then make sure none of it lives."""
        token = run["token"]
        deadline = datetime.fromisoformat(run["started_at"]) + timedelta(
            seconds=float(run["deadline_seconds"])
        )
        exit_file = paths.run(token, "exit")
        delay = _POLL
        killed_here = False
        while True:
            code = _read_int(exit_file)
            if code is not None:
                break
            alive = child.returncode is None if child is not None else _lock_held(paths.module_lock)
            if not alive:
                code = _read_int(exit_file)
                break
            remaining = (deadline - self._clock.now()).total_seconds()
            if remaining <= 0 and not killed_here:
                limit = f"{job.max_execution.total_seconds():g}s"
                await self._kill(
                    paths,
                    token,
                    why=f"killed after its max execution time of {limit}",
                    timed_out=True,
                )
                killed_here = True
                remaining = KILL_GRACE.total_seconds()
            if child is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(max(remaining, _POLL), 5.0)):
                        await child.wait()
            else:
                await asyncio.sleep(min(delay, max(remaining, _POLL)))
                delay = min(delay * 2, _POLL_MAX)
        # Whatever the module left running in its process group ends with it.
        pid = _read_int(paths.run(token, "started"))
        if pid is not None:
            kill_group(pid, signal.SIGKILL)
        lingering = await self._until_released(paths.module_lock)
        killed = _read_json(paths.run(token, "killed"))
        if killed is not None:
            return ModuleEnd(
                exit_code=code, timed_out=bool(killed["timed_out"]), error=killed["why"]
            )
        if lingering:
            return ModuleEnd(
                exit_code=code,
                error="a process the module started outside its process group was still "
                "running after the module exited; nothing was committed",
            )
        if code is None:
            return ModuleEnd(
                error="the module's process vanished without an exit code (killed from outside?)"
            )
        return ModuleEnd(exit_code=code)

    async def _until_released(self, lock: Path) -> bool:
        """Wait (bounded) until no process holds `lock`; True if one still does."""
        loop = asyncio.get_running_loop()
        end = loop.time() + LINGER_GRACE.total_seconds()
        while _lock_held(lock):
            if loop.time() >= end:
                return True
            await asyncio.sleep(_POLL)
        return False

    async def _kill(self, paths: _Job, token: str, *, why: str, timed_out: bool = False) -> None:
        """Stop a run's process group (TERM, then KILL after a grace), recording why."""
        _write_atomic(paths.run(token, "killed"), json.dumps({"why": why, "timed_out": timed_out}))
        pid = _read_int(paths.run(token, "started"))
        if pid is None or not _lock_held(paths.module_lock):
            return
        kill_group(pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        end = loop.time() + KILL_GRACE.total_seconds()
        while _lock_held(paths.module_lock) and loop.time() < end:
            await asyncio.sleep(_POLL)
        kill_group(pid, signal.SIGKILL)
        log.warning("killed job %s: %s", paths.dir.name, why)


def _os_error_text(err: OSError) -> str:
    """A person's reading of an OSError (disk full and read-only say what to do)."""
    where = f" at {err.filename}" if err.filename else ""
    if err.errno == errno.ENOSPC:
        return f"the disk is full{where}: free space and the job is retried"
    if err.errno == errno.EROFS:
        return f"the file system is read-only{where}"
    if err.errno in (errno.ENOENT, errno.ENOTDIR) and err.filename:
        return f"{err.filename} does not exist"
    return str(err)
