"""The `docker` a GPU pool's tasks find first on PATH in the Batch fake (run as a script).

A real GPU pool's nodes (an N-series VM size, an image with NVIDIA drivers and the NVIDIA
container toolkit) run `docker run --gpus all ...` with the GPUs attached. This machine has no
GPU, so on the fake's GPU pools this shim stands in for the NVIDIA runtime: for each
`docker run` / `docker create` (also as `docker container run|create`) it appends one JSON line
`{"command", "image", "gpus"}` to the task's record file, takes the `--gpus` options out, and
execs the real `docker` with the rest; every other command goes to the real `docker` untouched.
Only options before the image are read: whatever follows the image is the container's own
command line and passes unchanged.

    python -I -S _docker_shim.py REAL_DOCKER RECORD_DIR ARGS...

The record file is `RECORD_DIR/<AZ_BATCH_JOB_ID>.<AZ_BATCH_TASK_ID>.jsonl`, outside the task's
directory (so the task cannot see it and deleting the task does not lose it).
Standard library only: it runs with `-I -S` for every docker command of a task.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

GLOBAL_VALUED = frozenset(
    {"-c", "--context", "-H", "--host", "--config", "-l", "--log-level"}
    | {"--tlscacert", "--tlscert", "--tlskey"}
)
"""docker's global options that take a value as the next word."""
RUN_BOOLEANS = frozenset(
    {"-d", "--detach", "-i", "--interactive", "-t", "--tty", "--rm", "--init", "--privileged"}
    | {"-P", "--publish-all", "--read-only", "--no-healthcheck", "--oom-kill-disable"}
    | {"--disable-content-trust", "--help", "-q", "--quiet", "--sig-proxy", "--use-api-socket"}
)
"""`docker run|create` options that take no value (every other option takes one)."""
SHORT_BOOLEAN_LETTERS = frozenset("ditPq")
"""Letters that may be combined into one short option (`-dit`)."""
CREATING = frozenset({"run", "create"})


@dataclass(frozen=True, slots=True)
class ContainerRun:
    """One `docker run|create` a task asked for: its image and its `--gpus` values."""

    command: str
    image: str
    gpus: tuple[str, ...]


def _takes_value(option: str) -> bool:
    if "=" in option or option in RUN_BOOLEANS:
        return False
    if not option.startswith("--") and len(option) > 2:
        return not set(option[1:]) <= SHORT_BOOLEAN_LETTERS
    return True


def strip_gpus(argv: list[str]) -> tuple[list[str], ContainerRun | None]:
    """Return `argv` (docker's arguments) without the `--gpus` options of a run or create,
    and what that run asked for; other commands come back unchanged with None."""
    i, command = 0, ""
    while i < len(argv):  # docker's global options, then its command
        word = argv[i]
        if not word.startswith("-"):
            command = word
            break
        i += 2 if word in GLOBAL_VALUED else 1
    if command == "container" and i + 1 < len(argv) and argv[i + 1] in CREATING:
        i, command = i + 1, argv[i + 1]
    if command not in CREATING:
        return list(argv), None
    out, gpus, image = list(argv[: i + 1]), [], ""
    i += 1
    while i < len(argv):
        word = argv[i]
        if word == "--gpus" and i + 1 < len(argv):
            gpus.append(argv[i + 1])
            i += 2
            continue
        if word.startswith("--gpus="):
            gpus.append(word.split("=", 1)[1])
            i += 1
            continue
        if word == "--" or not word.startswith("-") or word == "-":
            rest = argv[i + 1 :] if word == "--" else argv[i:]
            image = rest[0] if rest else ""
            out += argv[i:]
            break
        step = 2 if _takes_value(word) else 1
        out += argv[i : i + step]
        i += step
    return out, ContainerRun(command=command, image=image, gpus=tuple(gpus))


def main(args: list[str]) -> None:
    """Record and rewrite one docker command line, then become the real docker."""
    real, record_dir, argv = args[0], args[1], args[2:]
    argv, run = strip_gpus(argv)
    if run is not None:
        job = os.environ.get("AZ_BATCH_JOB_ID", "")
        task = os.environ.get("AZ_BATCH_TASK_ID", "")
        line = json.dumps({"command": run.command, "image": run.image, "gpus": list(run.gpus)})
        with open(os.path.join(record_dir, f"{job}.{task}.jsonl"), "a") as record:
            record.write(line + "\n")
    os.execv(real, [real, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
