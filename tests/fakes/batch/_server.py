"""The fake Batch account: an aiohttp HTTPS server on a background thread, and its tasks run as
real processes on this machine.

State lives in memory (pools, jobs, tasks); each task's files live under `root/<job>/<task>/`
(`stdout.txt`, `stderr.txt`, `wd/`), as on a node. A task's command line is split like a
Linux node splits it (no shell) and run in its own process group with the variables Batch sets
(`AZ_BATCH_TASK_WORKING_DIR`, `AZ_BATCH_TASK_ID`, ...), its environment settings and this
machine's `DOCKER_HOST`; it goes active → running → completed, and what is left of its process
group is killed when it ends, when it is terminated, deleted, or passes its max wall-clock time.
On a GPU pool (an N-series `vmSize`) a task finds the fake's `docker` shim first on PATH: it
records each container run and takes `--gpus` out, as this machine has no GPU (`_docker_shim`).
Every task that completes is kept in `FakeBatch.ran`, also after it is deleted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import ssl
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import isodate
from aiohttp import web

from tests.fakes.batch import _docker_shim
from tests.fakes.batch._auth import AuthFailure, verify
from tests.fakes.batch._docker_shim import ContainerRun
from tests.fakes.servicebus._tls import certificate_files

ID_RULE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
GPU_VM_SIZE = re.compile(r"^standard_n[cdvg]", re.IGNORECASE)
"""Azure's GPU families (NC, ND, NV, NG): a pool of such a size is a GPU pool."""
CPU_VM_SIZE = "standard_d4s_v3"
GPU_VM_DEFAULT = "standard_nc6s_v3"
"""The VM size `FakeBatch(gpu_pools=...)` gives a pool (one V100 per node)."""
FAKE_DIR = ".fake"
"""The fake's own files under the node root (a dot: never a Batch job id)."""
TERMINATE_GRACE = 3.0
"""Seconds between SIGTERM and SIGKILL of a task's processes."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


@dataclass
class _Task:
    job_id: str
    body: dict[str, Any]
    directory: Path
    created: datetime = field(default_factory=_now)
    state: str = "active"
    previous_state: str | None = None
    transitioned: datetime = field(default_factory=_now)
    started: datetime | None = None
    ended: datetime | None = None
    exit_code: int | None = None
    failure: dict[str, Any] | None = None
    process: asyncio.subprocess.Process | None = None
    runner: asyncio.Task[None] | None = None
    stop_reason: str = ""
    etag: str = field(default_factory=lambda: f"0x{secrets.token_hex(8).upper()}")

    @property
    def id(self) -> str:
        return str(self.body["id"])

    def move(self, state: str) -> None:
        self.previous_state, self.state, self.transitioned = self.state, state, _now()
        self.etag = f"0x{secrets.token_hex(8).upper()}"


@dataclass(frozen=True, slots=True)
class RanTask:
    """A task that completed (kept after the task is deleted), for assertions."""

    job_id: str
    task_id: str
    pool_id: str
    command_line: str
    environment: tuple[str, ...]
    """The names of its environment settings."""
    exit_code: int | None
    failure: str
    """The failure code (`FailureExitCode`, `TaskEnded`, ...), empty when it succeeded."""
    container_runs: tuple[ContainerRun, ...]
    """On a GPU pool: each `docker run|create` its script made, with its `--gpus` values."""


@dataclass
class _Job:
    body: dict[str, Any]
    created: datetime = field(default_factory=_now)
    state: str = "active"
    tasks: dict[str, _Task] = field(default_factory=dict)


class BatchError(Exception):
    """An error answer in the service's shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        values: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.values = values or {}
        self.headers = headers or {}


@dataclass(frozen=True)
class Logged:
    """One request the fake answered."""

    method: str
    path: str
    status: int
    code: str = ""


class FakeBatch:
    """A Batch account over HTTPS whose tasks run on this machine.

    with FakeBatch(tmp_path, pools={"gpu-pool": {}}) as batch:
        client = BatchClient(batch.url, AzureNamedKeyCredential(batch.account, batch.key),
                             connection_verify=batch.ca_file)
    """

    def __init__(
        self,
        root: Path,
        *,
        account: str = "fakebatch",
        key: str | None = None,
        pools: dict[str, dict[str, Any]] | None = None,
        gpu_pools: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        docker_host: str | None = None,
        task_slots: int = 8,
        job_delete_seconds: float = 0.3,
        start_delay: float = 0.0,
    ) -> None:
        self.root = root
        self.account = account
        self.key = key or base64.b64encode(secrets.token_bytes(64)).decode()
        self.host = host
        wanted = dict(pools if pools is not None else {"ion-pool": {}})
        for name in gpu_pools:
            wanted[name] = {"vmSize": GPU_VM_DEFAULT, **wanted.get(name, {})}
        self.pools: dict[str, dict[str, Any]] = {
            name: {
                "vmSize": CPU_VM_SIZE,
                "taskSlotsPerNode": task_slots,
                "virtualMachineConfiguration": {
                    "imageReference": {
                        "publisher": "microsoft-dsvm",
                        "offer": "ubuntu-hpc",
                        "sku": "2204",
                    },
                    "nodeAgentSKUId": "batch.node.ubuntu 22.04",
                    "containerConfiguration": {"type": "dockerCompatible"},
                },
                **extra,
            }
            for name, extra in wanted.items()
        }
        self.docker_host = (
            docker_host if docker_host is not None else os.environ.get("DOCKER_HOST", "")
        )
        self.task_slots = task_slots
        self.job_delete_seconds = job_delete_seconds
        self.start_delay = start_delay
        self.jobs: dict[str, _Job] = {}
        self.ran: list[RanTask] = []
        """Every task that completed, in order (deleted ones too)."""
        self.log: list[Logged] = []
        self.errors: list[BaseException] = []
        self._throttles: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.ca_file, self._key_file = certificate_files((host,))

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The account's endpoint."""
        return f"https://{self.host}:{self.port}"

    def is_gpu_pool(self, pool_id: str) -> bool:
        """Whether the pool's VM size is a GPU family (its tasks may run `docker --gpus`)."""
        return bool(GPU_VM_SIZE.match(str(self.pools.get(pool_id, {}).get("vmSize", ""))))

    @property
    def _shim_dir(self) -> Path:
        return self.root / FAKE_DIR / "gpu-node-bin"

    @property
    def _record_dir(self) -> Path:
        return self.root / FAKE_DIR / "container-runs"

    def _write_docker_shim(self) -> None:
        """The GPU nodes' `docker`: `_docker_shim` in front of this machine's docker."""
        real = shutil.which("docker") or "/usr/bin/docker"
        self._shim_dir.mkdir(parents=True, exist_ok=True)
        self._record_dir.mkdir(parents=True, exist_ok=True)
        shim = self._shim_dir / "docker"
        words = [sys.executable, "-I", "-S", _docker_shim.__file__, real, str(self._record_dir)]
        shim.write_text(f'#!/bin/sh\nexec {shlex.join(words)} "$@"\n')
        shim.chmod(0o755)

    def _container_runs(self, task: _Task) -> tuple[ContainerRun, ...]:
        path = self._record_dir / f"{task.job_id}.{task.id}.jsonl"
        if not path.is_file():
            return ()
        runs = []
        for line in path.read_text().splitlines():
            if line.strip():
                raw = json.loads(line)
                runs.append(ContainerRun(raw["command"], raw["image"], tuple(raw["gpus"])))
        return tuple(runs)

    def __enter__(self) -> FakeBatch:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_docker_shim()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(30) or not self.port:
            raise RuntimeError(f"the fake Batch account did not start: {self.errors!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(60)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(30)

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as err:
            self.errors.append(err)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        routes = [
            web.get("/pools/{pool}", self._get_pool),
            web.get("/jobs", self._list_jobs),
            web.post("/jobs", self._add_job),
            web.get("/jobs/{job}", self._get_job),
            web.delete("/jobs/{job}", self._delete_job),
            web.post("/jobs/{job}/tasks", self._add_task),
            web.get("/jobs/{job}/tasks", self._list_tasks),
            web.get("/jobs/{job}/tasks/{task}", self._get_task),
            web.delete("/jobs/{job}/tasks/{task}", self._delete_task),
            web.post("/jobs/{job}/tasks/{task}/terminate", self._terminate_task),
            web.get("/jobs/{job}/tasks/{task}/files/{path:.+}", self._get_file),
        ]
        app.add_routes(routes)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, self._key_file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=context)
        await site.start()
        server = site._server  # the bound port of port 0
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _shutdown(self) -> None:
        for job in self.jobs.values():
            for task in job.tasks.values():
                await self._stop(task, "shutdown")
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test hooks ---------------------------------------------------------------------------

    def throttle(self, count: int, *, status: int = 429, retry_after: float = 1) -> None:
        """Answer the next `count` requests with `status` (429 or 503) and Retry-After."""
        with self._lock:
            self._throttles.extend([(status, retry_after)] * count)

    def task(self, job_id: str, task_id: str) -> dict[str, Any]:
        """A task as the service would return it (for assertions)."""
        return self._task_json(self.jobs[job_id].tasks[task_id])

    def statuses(self, code: str = "") -> list[Logged]:
        """The requests answered, or those answered with an error `code`."""
        return [e for e in self.log if not code or e.code == code]

    # -- HTTP plumbing ------------------------------------------------------------------------

    def _error(self, err: BatchError, request_id: str) -> web.Response:
        body: dict[str, Any] = {
            "odata.metadata": f"{self.url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities"
            ".Container.errors/@Element",
            "code": err.code,
            "message": {
                "lang": "en-US",
                "value": f"{err.message}\nRequestId:{request_id}\nTime:{_iso(_now())}",
            },
        }
        if err.values:
            body["values"] = [{"key": k, "value": v} for k, v in err.values.items()]
        return web.json_response(
            body,
            status=err.status,
            headers=err.headers,
            content_type="application/json;odata=minimalmetadata",
        )

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        try:
            with self._lock:
                throttle = self._throttles.pop(0) if self._throttles else None
            if throttle is not None:
                status, after = throttle
                raise BatchError(
                    status,
                    "TooManyRequests" if status == 429 else "ServerBusy",
                    "The server is currently unable to receive requests. Please retry your request."
                    if status != 429
                    else "The request was throttled. Retry after the time in Retry-After.",
                    headers={"Retry-After": f"{after:g}"},
                )
            try:
                verify(
                    request.method,
                    request.rel_url.raw_path,
                    request.rel_url.raw_query_string,
                    request.headers,
                    account=self.account,
                    key=self.key,
                )
            except AuthFailure as failure:
                raise BatchError(
                    403,
                    "AuthenticationFailed",
                    "Server failed to authenticate the request. Make sure the value of "
                    "Authorization header is correctly formed including the signature.",
                    values={"AuthenticationErrorDetail": failure.detail},
                ) from None
            if not request.query.get("api-version"):
                raise BatchError(
                    400,
                    "MissingRequiredQueryParameter",
                    "A query parameter that's mandatory for this request is not specified.",
                    values={"QueryParameterName": "api-version"},
                )
            response = await handler(request)
        except BatchError as err:
            response = self._error(err, request_id)
            self.log.append(Logged(request.method, request.path, err.status, err.code))
        except web.HTTPException:
            raise
        except Exception as err:  # the fake's own bug: say so, answer 500
            self.errors.append(err)
            response = self._error(BatchError(500, "InternalError", repr(err)), request_id)
            self.log.append(Logged(request.method, request.path, 500, "InternalError"))
        else:
            self.log.append(Logged(request.method, request.path, response.status))
        response.headers["request-id"] = request_id
        if "client-request-id" in request.headers:
            response.headers["client-request-id"] = request.headers["client-request-id"]
        return response

    def _json(self, body: dict[str, Any], *, status: int = 200, etag: str = "") -> web.Response:
        headers = {"DataServiceVersion": "3.0"}
        if etag:
            headers["ETag"] = etag
            headers["Last-Modified"] = format_datetime(_now(), usegmt=True)
        return web.json_response(
            body,
            status=status,
            headers=headers,
            content_type="application/json;odata=minimalmetadata",
        )

    def _created(self, url: str) -> web.Response:
        return web.Response(
            status=201,
            headers={
                "DataServiceId": url,
                "Location": url,
                "ETag": f"0x{secrets.token_hex(8).upper()}",
                "Last-Modified": format_datetime(_now(), usegmt=True),
                "DataServiceVersion": "3.0",
            },
        )

    @staticmethod
    def _select(obj: dict[str, Any], request: web.Request) -> dict[str, Any]:
        wanted = request.query.get("$select", "")
        if not wanted:
            return obj
        keys = {k.strip() for k in wanted.split(",") if k.strip()}
        return {k: v for k, v in obj.items() if k in keys}

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise BatchError(400, "InvalidRequestBody", "The request body is not JSON.") from None
        if not isinstance(body, dict):
            raise BatchError(400, "InvalidRequestBody", "The request body must be an object.")
        return body

    # -- pools and jobs -----------------------------------------------------------------------

    async def _get_pool(self, request: web.Request) -> web.Response:
        pool_id = request.match_info["pool"]
        if pool_id not in self.pools:
            raise BatchError(404, "PoolNotFound", "The specified pool does not exist.")
        pool = {
            "id": pool_id,
            "url": f"{self.url}/pools/{pool_id}",
            "state": "active",
            "allocationState": "steady",
            "currentDedicatedNodes": 1,
            "targetDedicatedNodes": 1,
            "creationTime": _iso(_now()),
            **self.pools[pool_id],
        }
        return self._json(self._select(pool, request), etag="0x1")

    def _job(self, job_id: str) -> _Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise BatchError(404, "JobNotFound", "The specified job does not exist.")
        return job

    def _job_json(self, job: _Job) -> dict[str, Any]:
        return {
            "id": job.body["id"],
            "url": f"{self.url}/jobs/{job.body['id']}",
            "state": job.state,
            "creationTime": _iso(job.created),
            "poolInfo": job.body.get("poolInfo", {}),
            "priority": job.body.get("priority", 0),
            "displayName": job.body.get("displayName"),
            "executionInfo": {
                "startTime": _iso(job.created),
                "poolId": job.body.get("poolInfo", {}).get("poolId"),
            },
        }

    async def _list_jobs(self, request: web.Request) -> web.Response:
        return self._json(
            {"value": [self._select(self._job_json(j), request) for j in self.jobs.values()]}
        )

    async def _add_job(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        job_id = str(body.get("id", ""))
        if not ID_RULE.match(job_id):
            raise BatchError(
                400,
                "InvalidPropertyValue",
                "The value provided for one of the properties in the request body is invalid.",
                values={"PropertyName": "id", "PropertyValue": job_id},
            )
        if existing := self.jobs.get(job_id):
            if existing.state == "deleting":
                raise BatchError(
                    409,
                    "JobBeingDeleted",
                    "The specified job is marked for deletion and is being deleted.",
                )
            raise BatchError(409, "JobExists", "The specified job already exists.")
        if not (body.get("poolInfo") or {}).get("poolId") and not (body.get("poolInfo") or {}).get(
            "autoPoolSpecification"
        ):
            raise BatchError(
                400,
                "MissingRequiredProperty",
                "A required property was not specified in the request body.",
                values={"PropertyName": "poolInfo"},
            )
        self.jobs[job_id] = _Job(body=body)
        return self._created(f"{self.url}/jobs/{job_id}")

    async def _get_job(self, request: web.Request) -> web.Response:
        job = self._job(request.match_info["job"])
        return self._json(self._select(self._job_json(job), request), etag="0x1")

    async def _delete_job(self, request: web.Request) -> web.Response:
        job = self._job(request.match_info["job"])
        if job.state != "deleting":
            job.state = "deleting"
            asyncio.get_running_loop().create_task(self._remove_job(job))
        return web.Response(status=202, headers={"DataServiceVersion": "3.0"})

    async def _remove_job(self, job: _Job) -> None:
        for task in list(job.tasks.values()):
            await self._stop(task, "job deleted")
        await asyncio.sleep(self.job_delete_seconds)
        self.jobs.pop(job.body["id"], None)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root / job.body["id"])

    # -- tasks --------------------------------------------------------------------------------

    def _task(self, request: web.Request) -> tuple[_Job, _Task]:
        job = self._job(request.match_info["job"])
        task = job.tasks.get(request.match_info["task"])
        if task is None:
            raise BatchError(404, "TaskNotFound", "The specified task does not exist.")
        return job, task

    def _task_json(self, task: _Task) -> dict[str, Any]:
        body = task.body
        out: dict[str, Any] = {
            "id": task.id,
            "url": f"{self.url}/jobs/{task.job_id}/tasks/{task.id}",
            "eTag": task.etag,
            "creationTime": _iso(task.created),
            "lastModified": _iso(task.created),
            "state": task.state,
            "stateTransitionTime": _iso(task.transitioned),
            "commandLine": body.get("commandLine", ""),
            "environmentSettings": body.get("environmentSettings", []),
            "constraints": {
                "maxWallClockTime": (body.get("constraints") or {}).get(
                    "maxWallClockTime", "P10675199DT2H48M5.4775807S"
                ),
                "retentionTime": (body.get("constraints") or {}).get("retentionTime", "P7D"),
                "maxTaskRetryCount": (body.get("constraints") or {}).get("maxTaskRetryCount", 0),
            },
            "requiredSlots": body.get("requiredSlots", 1),
            "userIdentity": body.get(
                "userIdentity", {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}
            ),
        }
        if body.get("displayName"):
            out["displayName"] = body["displayName"]
        if task.previous_state:
            out["previousState"] = task.previous_state
        if task.started:
            info: dict[str, Any] = {
                "startTime": _iso(task.started),
                "retryCount": 0,
                "requeueCount": 0,
            }
            if task.state == "completed":
                info["endTime"] = _iso(task.ended)
                if task.exit_code is not None:
                    info["exitCode"] = task.exit_code
                info["result"] = "success" if task.failure is None else "failure"
                if task.failure is not None:
                    info["failureInfo"] = task.failure
            out["executionInfo"] = info
            out["nodeInfo"] = {
                "poolId": self.jobs[task.job_id].body.get("poolInfo", {}).get("poolId"),
                "nodeId": "tvmps_fake_node_0",
                "taskRootDirectory": f"workitems/{task.job_id}/job-1/{task.id}",
            }
        return out

    async def _add_task(self, request: web.Request) -> web.Response:
        job = self._job(request.match_info["job"])
        if job.state == "deleting":
            raise BatchError(
                409,
                "JobBeingDeleted",
                "The specified job is marked for deletion and is being deleted.",
            )
        body = await self._body(request)
        task_id = str(body.get("id", ""))
        if not ID_RULE.match(task_id):
            raise BatchError(
                400,
                "InvalidPropertyValue",
                "The value provided for one of the properties in the request body is invalid.",
                values={"PropertyName": "id", "PropertyValue": task_id},
            )
        if not body.get("commandLine"):
            raise BatchError(
                400,
                "MissingRequiredProperty",
                "A required property was not specified in the request body.",
                values={"PropertyName": "commandLine"},
            )
        if any(t.lower() == task_id.lower() for t in job.tasks):
            raise BatchError(409, "TaskExists", "The specified task already exists.")
        for key in ("maxWallClockTime", "retentionTime"):
            value = (body.get("constraints") or {}).get(key)
            if value is not None:
                try:
                    isodate.parse_duration(value)
                except (isodate.ISO8601Error, ValueError):
                    raise BatchError(
                        400,
                        "InvalidPropertyValue",
                        f"{key} is not an ISO 8601 duration.",
                        values={"PropertyName": key, "PropertyValue": str(value)},
                    ) from None
        directory = self.root / job.body["id"] / task_id
        task = _Task(job_id=job.body["id"], body=body, directory=directory)
        job.tasks[task_id] = task
        task.runner = asyncio.get_running_loop().create_task(self._run(task))
        return self._created(f"{self.url}/jobs/{task.job_id}/tasks/{task_id}")

    async def _list_tasks(self, request: web.Request) -> web.Response:
        job = self._job(request.match_info["job"])
        tasks = list(job.tasks.values())
        flt = request.query.get("$filter", "").strip()
        if flt:
            found = re.fullmatch(r"state\s+eq\s+'(\w+)'", flt)
            if not found:
                raise BatchError(
                    400,
                    "InvalidQueryParameterValue",
                    "The fake supports only $filter=state eq '<state>'.",
                    values={"QueryParameterName": "$filter", "QueryParameterValue": flt},
                )
            tasks = [t for t in tasks if t.state == found.group(1)]
        return self._json({"value": [self._select(self._task_json(t), request) for t in tasks]})

    async def _get_task(self, request: web.Request) -> web.Response:
        _, task = self._task(request)
        return self._json(self._select(self._task_json(task), request), etag=task.etag)

    async def _delete_task(self, request: web.Request) -> web.Response:
        job, task = self._task(request)
        await self._stop(task, "deleted")
        job.tasks.pop(task.id, None)
        with contextlib.suppress(OSError):
            shutil.rmtree(task.directory)
        return web.Response(status=200, headers={"DataServiceVersion": "3.0"})

    async def _terminate_task(self, request: web.Request) -> web.Response:
        _, task = self._task(request)
        if task.state == "completed":
            raise BatchError(409, "TaskCompleted", "The specified task is already completed.")
        await self._stop(task, "terminated")
        return web.Response(status=204, headers={"DataServiceVersion": "3.0"})

    async def _get_file(self, request: web.Request) -> web.StreamResponse:
        _, task = self._task(request)
        relative = unquote(request.match_info["path"])
        path = (task.directory / relative).resolve()
        if not path.is_relative_to(task.directory.resolve()) or not path.is_file():
            raise BatchError(404, "FileNotFound", "The specified file does not exist.")
        data = path.read_bytes()
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={
                "ocp-creation-time": format_datetime(task.created, usegmt=True),
                "ocp-batch-file-isdirectory": "False",
                "ocp-batch-file-url": f"{self.url}/jobs/{task.job_id}/tasks/{task.id}/files/{relative}",
                "Last-Modified": format_datetime(_now(), usegmt=True),
            },
        )

    # -- running tasks ------------------------------------------------------------------------

    def _running(self) -> int:
        return sum(1 for j in self.jobs.values() for t in j.tasks.values() if t.state == "running")

    async def _run(self, task: _Task) -> None:
        try:
            await self._execute(task)
        except asyncio.CancelledError:
            raise
        except BaseException as err:
            self.errors.append(err)

    async def _execute(self, task: _Task) -> None:
        job = self.jobs[task.job_id]
        pool = str((job.body.get("poolInfo") or {}).get("poolId", ""))
        # a task waits while its job's pool does not exist or has no free slot (as on Batch)
        while pool not in self.pools or self._running() >= self.task_slots or self.start_delay:
            if task.stop_reason:
                return
            if pool in self.pools and self._running() < self.task_slots:
                await asyncio.sleep(self.start_delay)
                break
            await asyncio.sleep(0.05)
        if task.stop_reason:
            return
        wd = task.directory / "wd"
        wd.mkdir(parents=True, exist_ok=True)
        path = os.environ.get("PATH", "/usr/bin:/bin")
        if self.is_gpu_pool(pool):
            path = f"{self._shim_dir}{os.pathsep}{path}"
        env = {
            "PATH": path,
            "HOME": str(task.directory),
            "LANG": "C.UTF-8",
            "AZ_BATCH_ACCOUNT_NAME": self.account,
            "AZ_BATCH_ACCOUNT_URL": self.url + "/",
            "AZ_BATCH_POOL_ID": pool,
            "AZ_BATCH_NODE_ID": "tvmps_fake_node_0",
            "AZ_BATCH_NODE_ROOT_DIR": str(self.root),
            "AZ_BATCH_NODE_SHARED_DIR": str(self.root / "shared"),
            "AZ_BATCH_JOB_ID": task.job_id,
            "AZ_BATCH_TASK_ID": task.id,
            "AZ_BATCH_TASK_DIR": str(task.directory),
            "AZ_BATCH_TASK_WORKING_DIR": str(wd),
        }
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        for setting in task.body.get("environmentSettings") or []:
            env[str(setting["name"])] = str(setting.get("value") or "")
        task.move("running")
        task.started = _now()
        limit = (task.body.get("constraints") or {}).get("maxWallClockTime")
        wall_clock = isodate.parse_duration(limit).total_seconds() if limit else None
        with (
            (task.directory / "stdout.txt").open("wb") as out,
            (task.directory / "stderr.txt").open("wb") as err,
        ):
            try:
                task.process = await asyncio.create_subprocess_exec(
                    *shlex.split(task.body["commandLine"]),
                    cwd=wd,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as cannot:
                task.failure = {
                    "category": "UserError",
                    "code": "CommandProgramNotFound",
                    "message": f"The specified command program is not found: {cannot}",
                }
                task.ended = _now()
                self._complete(task)
                return
            try:
                code = await asyncio.wait_for(task.process.wait(), timeout=wall_clock)
            except TimeoutError:
                task.stop_reason = task.stop_reason or "wall clock"
                await self._kill(task.process)
                code = None
            await self._kill(task.process)  # what it left behind
        task.ended = _now()
        if task.stop_reason == "wall clock":
            task.failure = {
                "category": "UserError",
                "code": "MaxWallClockTimeExpiry",
                "message": "The task exceeded its maximum wall clock time",
            }
        elif task.stop_reason:
            task.failure = {
                "category": "UserError",
                "code": "TaskEnded",
                "message": "Task Was Ended by User Request",
            }
        else:
            task.exit_code = code
            if code != 0:
                task.failure = {
                    "category": "UserError",
                    "code": "FailureExitCode",
                    "message": "The task exited with an exit code representing a failure",
                    "details": [
                        {
                            "name": "Message",
                            "value": "The task exited with an exit code representing a failure",
                        }
                    ],
                }
        self._complete(task)

    async def _kill(self, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=TERMINATE_GRACE)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

    async def _stop(self, task: _Task, why: str) -> None:
        if task.state == "completed":
            return
        task.stop_reason = why
        if task.process is not None:
            await self._kill(task.process)
        if task.runner is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(task.runner), timeout=TERMINATE_GRACE + 5)
        if task.state != "completed":
            task.ended = _now()
            task.failure = {
                "category": "UserError",
                "code": "TaskEnded",
                "message": "Task Was Ended by User Request",
            }
            self._complete(task)

    def _complete(self, task: _Task) -> None:
        task.move("completed")
        job = self.jobs.get(task.job_id)
        self.ran.append(
            RanTask(
                job_id=task.job_id,
                task_id=task.id,
                pool_id=str((job.body.get("poolInfo") or {}).get("poolId", "")) if job else "",
                command_line=str(task.body.get("commandLine", "")),
                environment=tuple(
                    str(s["name"]) for s in task.body.get("environmentSettings") or []
                ),
                exit_code=task.exit_code,
                failure=str((task.failure or {}).get("code", "")),
                container_runs=self._container_runs(task),
            )
        )


@contextlib.contextmanager
def running_fake_batch(root: Path, **kwargs: Any) -> Iterator[FakeBatch]:
    """A running fake account; asserts at the end that it raised nothing of its own."""
    with FakeBatch(root, **kwargs) as batch:
        yield batch
    assert not batch.errors, f"the fake Batch account raised: {batch.errors!r}"
