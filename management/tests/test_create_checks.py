"""Create refuses, on the local/docker providers, a module this machine could never run (#10).

A working directory that does not exist, an image given with a command (the local executor
would run the command and ignore the image), and an image with no container runtime to run it
are each refused at Create with INVALID_ARGUMENT naming the request field, and nothing is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from ion.proto import module_pb2, module_pb2_grpc


def _request(**overrides: Any) -> module_pb2.ModuleCreateRequest:
    fields: dict[str, Any] = {"modulename": "door", "eventsubscriptions": "door.in"}
    fields.update(overrides)
    return module_pb2.ModuleCreateRequest(**fields)


@pytest.fixture
def stub(channel: Any) -> Any:
    return module_pb2_grpc.ModuleServiceStub(channel)


async def _refused(stub: Any, running: Any, request: module_pb2.ModuleCreateRequest) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Create(request, timeout=5)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert await running.stub.platform.meta.list_modules(include_deleted=True) == []
    return str(err.details())


async def test_a_working_dir_that_does_not_exist_is_refused(
    stub: Any, running: Any, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    details = await _refused(stub, running, _request(command=["true"], working_dir=str(missing)))
    assert details.startswith("field 'working_dir': ") and str(missing) in details
    assert "not a directory" in details
    await stub.Create(_request(command=["true"], working_dir=str(tmp_path)), timeout=5)


async def test_an_image_with_a_command_is_refused(
    stub: Any, running: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_docker(tmp_path, monkeypatch)
    request = _request(moduleimage="team/app:1", command=["python", "app.py"])
    details = await _refused(stub, running, request)
    assert details.startswith("field 'moduleimage': ") and "not both" in details
    await stub.Create(_request(moduleimage="team/app:1"), timeout=5)


async def test_an_image_without_a_container_runtime_is_refused(
    stub: Any, running: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither docker nor podman
    details = await _refused(stub, running, _request(moduleimage="team/app:1"))
    assert details.startswith("field 'moduleimage': ") and "docker or podman" in details
    _fake_docker(tmp_path, monkeypatch)
    await stub.Create(_request(moduleimage="team/app:1"), timeout=5)


def _fake_docker(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = directory / "docker"
    docker.write_text("#!/bin/sh\nexit 1\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(directory))
