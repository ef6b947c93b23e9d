"""The Batch task of one attempt: its id, its environment settings and its command line.

The command line is a fixed bash script, as 2018's pod2docker script was: `docker run` of the
handler's prepare, the module (with `--gpus all` when it asks for a GPU, stopped at its own
deadline) and the handler's commit, sharing `$AZ_BATCH_TASK_WORKING_DIR/ion` mounted at `/ion`.
Everything variable that could be secret reaches it as a task environment setting (the job
request, the backends' credentials, the registry password, the module's env values) and is
passed on with `docker run -e NAME`, so no value appears in the command line; names, images and
the module's command do. Each step leaves a line `<step> <exit code>` in `wd/ion-steps`, its
output in `wd/<step>.log`, and the handler's own report in `wd/outcome/<step>.json`, which the
executor reads with task files get.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from dataclasses import dataclass, field
from datetime import timedelta

from ion.core import telemetry
from ion.core.ports.executor import JobRequest

BASE_DIR = "/ion"
OUTCOME_DIR = "/ion-outcome"
"""Where the handler steps write their reports (a directory the module does not see)."""
PREPARE, WORKER, COMMIT = "prepare", "worker", "commit"
"""The steps, with 2018's names (its logs were `wd/prepare.log`, `wd/worker.log`, ...)."""
STEPS_FILE = "wd/ion-steps"
REQUEST_ENV = "ION_JOB_REQUEST"
REGISTRY_PASSWORD_ENV = "ION_BATCH_REGISTRY_PASSWORD"
TIMED_OUT = "timeout"
"""The worker's line in `wd/ion-steps` when the script stopped it at its deadline."""

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_ID_MAX = 64


def batch_id(value: str) -> str:
    """Return `value` as a Batch id: ≤ 64 characters of letters, digits, `-` and `_`; a changed
    value ends with a hash of the original, so distinct values stay distinct."""
    clean = _ID_UNSAFE.sub("-", value).strip("-")
    if clean == value and 0 < len(clean) <= _ID_MAX:
        return clean
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    head = clean[: _ID_MAX - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}" if head else digest


def batch_job_id(prefix: str, module: str | None) -> str:
    """The Batch job of a module's dispatchers: `<prefix>-<module>` (`<prefix>` for all)."""
    return batch_id(f"{prefix}-{module}" if module else prefix)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSettings:
    """Executor-wide parts of every task."""

    handler_image: str
    default_module_image: str = ""
    registry_server: str = ""
    registry_username: str = ""
    registry_password: str = ""
    handler_env: dict[str, str] = field(default_factory=dict)
    """Plain settings of the handler steps."""
    handler_secrets: dict[str, str] = field(default_factory=dict)
    """Credentials of the handler steps (environment settings, never the command line)."""
    docker_network: str = ""
    host_path_mounts: tuple[str, ...] = ()
    handler_user: tuple[int, int] | None = None
    """uid and gid of the handler containers (the owner of the host paths), if not the image's."""
    deadline_allowance: timedelta = timedelta(minutes=10)
    retention: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPlan:
    """What the executor hands the SDK for one attempt."""

    task_id: str
    display_name: str
    command_line: str
    environment: dict[str, str]
    max_wall_clock: timedelta
    retention: timedelta


def _cpus(cpu: str) -> str:
    """Kubernetes CPU quantity (`500m`, `2`) as `docker run --cpus`."""
    if cpu.endswith("m"):
        return f"{int(cpu[:-1]) / 1000:g}"
    return f"{float(cpu):g}"


_MEMORY_UNITS = {"Ki": "k", "Mi": "m", "Gi": "g", "Ti": "t", "K": "k", "M": "m", "G": "g"}


def _memory(memory: str) -> str:
    """Kubernetes memory quantity (`512Mi`) as `docker run --memory` (`512m`)."""
    for unit, docker in _MEMORY_UNITS.items():
        if memory.endswith(unit):
            return f"{memory[: -len(unit)]}{docker}"
    return memory


def _pull(policy: str) -> str:
    return {"Always": "always", "Never": "never"}.get(policy, "missing")


def _q(words: list[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


_SCRIPT_HEAD = r"""set -u
wd="$AZ_BATCH_TASK_WORKING_DIR"
steps="$wd/ion-steps"
name="ion-$AZ_BATCH_TASK_ID"
docker=$(command -v docker) || { echo "[ion] no docker on this node" >&2; exit 127; }
mkdir -p "$wd/ion" "$wd/outcome" && chmod 777 "$wd/ion" "$wd/outcome" && : > "$steps" || exit 1
cleanup() { for s in prepare worker commit; do "$docker" rm -f "$name-$s" >/dev/null 2>&1; done; }
trap cleanup EXIT
trap 'echo "[ion] stopped" >&2; exit 143' TERM INT
if [ -n "${ION_BATCH_REGISTRY_SERVER:-}" ]; then
  export DOCKER_CONFIG="$wd/.docker"
  printf '%s' "$ION_BATCH_REGISTRY_PASSWORD" | "$docker" login --password-stdin \
    --username "$ION_BATCH_REGISTRY_USERNAME" "$ION_BATCH_REGISTRY_SERVER" >&2 || exit 1
fi
handler() {
  local step=$1; shift
  "$docker" run --rm --name "$name-$step" "$@" > "$wd/$step.log" 2>&1 &
  wait $!
  local code=$?
  echo "$step $code" >> "$steps"
  return $code
}
"""


def _worker_block(run_args: str, env_exports: str) -> str:
    # The module's container starts detached, so its deadline counts from its start; its
    # output is followed into wd/worker.log, and `docker wait` gives its exit code.
    return f"""
worker() (
  {env_exports}
  "$docker" run -d --name "$name-worker" "$@" > "$wd/worker.id" 2> "$wd/worker.log" || {{
    echo "worker 125" >> "$steps"; exit 125; }}
  ( sleep "$ION_BATCH_DEADLINE"; echo timeout > "$wd/worker.timeout"
    "$docker" kill "$name-worker" >/dev/null 2>&1 ) >/dev/null 2>&1 &
  watchdog=$!
  "$docker" logs -f "$name-worker" >> "$wd/worker.log" 2>&1 &
  follower=$!
  "$docker" wait "$name-worker" > "$wd/worker.exit" 2>> "$wd/worker.log" &
  wait $!
  kill $watchdog 2>/dev/null
  wait $follower 2>/dev/null
  code=$(cat "$wd/worker.exit" 2>/dev/null); code=${{code:-1}}
  if [ -f "$wd/worker.timeout" ]; then echo "worker {TIMED_OUT}" >> "$steps"; exit 124; fi
  echo "worker $code" >> "$steps"
  exit $code
)
handler prepare {{prepare}} || exit $?
worker {run_args} || exit $?
handler commit {{commit}} || exit $?
"""


def task_plan(job: JobRequest, settings: TaskSettings) -> TaskPlan:
    """Return the task of one attempt.

    Raises:
        ValueError: the module has no image and there is no default one for a command.
    """
    spec = job.spec
    module_image = spec.image or settings.default_module_image
    if not module_image:
        raise ValueError(
            f"module {spec.name!r} has no image: on Azure Batch a module runs from its container "
            "image (set `image`, or ION_AZUREBATCH__DEFAULT_MODULE_IMAGE for command-only modules)"
        )
    handler_image = spec.handler_image or settings.handler_image
    deadline = spec.max_execution_seconds

    env: dict[str, str] = {
        REQUEST_ENV: job.model_dump_json(exclude={"working_dir"}),
        "ION_BATCH_DEADLINE": f"{deadline:g}",
    }
    handler_vars: dict[str, str] = {
        "ION_HANDLER__BASE_DIR": BASE_DIR,
        **{
            name: url
            for name, url in (
                ("ION_BUS__URL", job.backends.bus_url),
                ("ION_BLOBS__URL", job.backends.blobs_url),
                ("ION_META__URL", job.backends.meta_url),
            )
            if url
        },
        # The attempt's trace context (TRACEPARENT) and OTEL_* settings (never the headers).
        **telemetry.job_environment(job.trace_context),
        **settings.handler_env,
        **settings.handler_secrets,
    }
    env.update(handler_vars)
    if settings.registry_server:
        env["ION_BATCH_REGISTRY_SERVER"] = settings.registry_server
        env["ION_BATCH_REGISTRY_USERNAME"] = settings.registry_username
        env[REGISTRY_PASSWORD_ENV] = settings.registry_password

    common: list[str] = []
    if settings.docker_network:
        common += ["--network", settings.docker_network]
    mounts: list[str] = []
    for path in settings.host_path_mounts:
        mounts += ["-v", f"{path}:{path}"]

    def handler_args(step: str) -> str:
        words = [*common, "-v", "$ION_DIR", "-v", "$OUTCOME_DIR", *mounts]
        if settings.handler_user is not None:
            words += ["--user", "{}:{}".format(*settings.handler_user)]
        words += ["-e", REQUEST_ENV, "-e", f"ION_TERMINATION_LOG={OUTCOME_DIR}/{step}.json"]
        for name in sorted(handler_vars):
            words += ["-e", name]
        words += ["--pull", "missing", handler_image]
        words += ["job", step]
        return _expand(_q(words))

    worker_words = [*common, "-v", "$ION_DIR", *mounts, "-e", f"HANDLER_BASE_DIR={BASE_DIR}"]
    exports = []
    environment = spec.environment
    for i, name in enumerate(sorted(environment)):
        env[f"ION_BATCH_ENV_{i}"] = environment[name]
        exports.append(f'export {shlex.quote(name)}="$ION_BATCH_ENV_{i}";')
        worker_words += ["-e", name]
    if spec.resources.gpu:
        worker_words += ["--gpus", "all"]
    if spec.resources.cpu:
        worker_words += ["--cpus", _cpus(spec.resources.cpu)]
    if spec.resources.memory:
        worker_words += ["--memory", _memory(spec.resources.memory)]
    if spec.working_dir:
        worker_words += ["-w", spec.working_dir]
    worker_words += ["--pull", _pull(spec.image_pull_policy)]
    command = list(spec.command)
    if command and not spec.image:
        # On the default image the command is the whole command line (its entrypoint replaced).
        worker_words += ["--entrypoint", command[0], module_image, *command[1:]]
    else:
        worker_words += [module_image, *command]

    body = _worker_block(_expand(_q(worker_words)), " ".join(exports) or ":")
    body = body.replace("{prepare}", handler_args(PREPARE)).replace(
        "{commit}", handler_args(COMMIT)
    )
    script = _SCRIPT_HEAD + body
    max_wall_clock = timedelta(seconds=math.ceil(deadline)) + settings.deadline_allowance
    return TaskPlan(
        task_id=batch_id(job.job_id),
        display_name=job.job_id,
        command_line=f"/bin/bash -c {shlex.quote(script)}",
        environment=env,
        max_wall_clock=max_wall_clock,
        retention=settings.retention,
    )


def _expand(quoted: str) -> str:
    # The two job directories are the task's own, known only on the node: let bash expand them.
    return quoted.replace("'$ION_DIR'", '"$wd/ion:/ion"').replace(
        "'$OUTCOME_DIR'", f'"$wd/outcome:{OUTCOME_DIR}"'
    )
