"""Pytest fixtures for tests against a real Docker engine and Ion's real images.

The repository's conftest.py imports them (`from tests.containers.fixtures import ...`):

- `docker_engine` (session): runs tools/docker/prepare.sh (installs Debian's Docker engine if missing, starts
  Ion's private dockerd under the cache directory unless an engine already answers) and sets
  `DOCKER_HOST` for the session. A dockerd this session started is stopped at its end.
- `ion_images` (session): builds Ion's images with tools/docker/images.py, the script `make
  images` runs, on `$BASE_IMAGE` or else the local base image (tools/docker/base-image.sh).
  Docker's layer cache and the cached base and wheelhouse make a warm run take seconds.

Without an engine (not root, no apt, dockerd refusing to start) the tests skip with the reason,
unless ION_REQUIRE_DOCKER=1 (as .ci/run sets), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "docker"
REQUIRE_ENV = "ION_REQUIRE_DOCKER"
LOCAL_BASE = "localhost/ion-base:bookworm-py311"


def require_docker(reason: str) -> None:
    """Skip with `reason`, or fail when ION_REQUIRE_DOCKER=1."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but no Docker engine: {reason}", pytrace=False)
    pytest.skip(f"no Docker engine: {reason} ({REQUIRE_ENV}=1 makes this a failure)")


@dataclass(frozen=True)
class DockerEngine:
    """A Docker engine that answers, and the `docker` client to talk to it."""

    host: str
    started_here: bool

    def run(
        self, *args: str, check: bool = True, timeout: float = 300, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `docker ARGS` against this engine; output captured as text."""
        done = subprocess.run(
            ["docker", *args],
            env={**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input.decode() if input is not None else None,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def inspect(self, image: str) -> dict[str, Any]:
        """`docker image inspect` of one image."""
        found = json.loads(self.run("image", "inspect", image).stdout)
        assert isinstance(found, list) and len(found) == 1
        result: dict[str, Any] = found[0]
        return result


def _own_engine_answers() -> bool:
    cache = os.environ.get("ION_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ion"
    )
    sock = Path(cache) / "docker" / "docker.sock"
    hosts = [h for h in (os.environ.get("ION_DOCKER_HOST"), f"unix://{sock}") if h]
    if shutil.which("docker") is None:
        return False
    for host in hosts:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env={**os.environ, "DOCKER_HOST": host},
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode == 0:
            return True
    return False


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A Docker engine for the session (DOCKER_HOST set); skips or fails without one."""
    if sys.platform != "linux":
        require_docker("Ion's engine set-up (tools/docker/prepare.sh) is for Linux")
    was_up = _own_engine_answers()
    start = time.monotonic()
    try:
        done = subprocess.run(
            [str(TOOLS / "prepare.sh")], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        require_docker(f"tools/docker/prepare.sh could not run: {err}")
        raise AssertionError("unreachable") from err
    if done.returncode != 0 or not done.stdout.strip():
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        require_docker(f"tools/docker/prepare.sh exited {done.returncode}: {tail}")
    host = done.stdout.strip().splitlines()[-1]
    print(f"\ndocker engine at {host} ready in {time.monotonic() - start:.1f} s", file=sys.stderr)
    engine = DockerEngine(host=host, started_here=not was_up)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", host)
        yield engine
    if engine.started_here:
        subprocess.run([str(TOOLS / "stop.sh")], capture_output=True, timeout=120, check=False)


@dataclass(frozen=True)
class IonImages:
    """Ion's images as built for this session: `tag(name)` is `localhost/ion-<name>:<version>`."""

    base: str
    version: str
    revision: str
    tags: dict[str, str]
    seconds: dict[str, float]

    def tag(self, name: str) -> str:
        return self.tags[name]


def build_images(engine: DockerEngine, *, base: str, only: Sequence[str] = ()) -> IonImages:
    """Build (or find cached) images with tools/docker/images.py; fail the test on an error."""
    argv = [sys.executable, str(TOOLS / "images.py"), "--base-image", base]
    if only:
        argv += ["--only", ",".join(only)]
    done = subprocess.run(
        argv,
        env={**os.environ, "DOCKER_HOST": engine.host},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"tools/docker/images.py failed:\n{done.stderr[-8000:]}")
    tags, seconds = {}, {}
    for line in done.stdout.splitlines():
        name, tag, took, _size = line.split()
        tags[name], seconds[name] = tag, float(took)
    version = next(iter(tags.values())).rsplit(":", 1)[1] if tags else ""
    revision_line = next(
        (line for line in done.stderr.splitlines() if ", revision " in line), ", revision ?"
    )
    return IonImages(
        base=base,
        version=version,
        revision=revision_line.rsplit(", revision ", 1)[1].strip(),
        tags=tags,
        seconds=seconds,
    )


@pytest.fixture(scope="session")
def ion_images(docker_engine: DockerEngine) -> IonImages:
    """All of Ion's images, built on $BASE_IMAGE or the local base image."""
    base = os.environ.get("BASE_IMAGE", "")
    if not base:
        done = subprocess.run(
            [str(TOOLS / "base-image.sh")],
            env={**os.environ, "DOCKER_HOST": docker_engine.host},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"tools/docker/base-image.sh failed:\n{done.stderr[-4000:]}")
        base = done.stdout.strip().splitlines()[-1]
    start = time.monotonic()
    images = build_images(docker_engine, base=base)
    print(f"ion images ready in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return images


__all__ = ["LOCAL_BASE", "DockerEngine", "IonImages", "build_images", "docker_engine", "ion_images"]
