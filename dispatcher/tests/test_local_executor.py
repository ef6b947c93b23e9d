"""The local executor passes the Executor contract and adopts jobs across instances."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ion.core.ports.executor import JobRequest, JobState
from ion.core.testing.executor_contract import ExecutorContract
from ion.dispatcher.executors.local import LocalExecutor, container_argv


class TestLocalExecutor(ExecutorContract):
    @pytest.fixture
    def executor(self, tmp_path: Path) -> LocalExecutor:
        return LocalExecutor(tmp_path / "jobs")

    @pytest.fixture
    def request_factory(self, executor: LocalExecutor) -> Any:
        def make(
            script: str,
            *,
            max_execution: timedelta = timedelta(seconds=30),
            env: dict[str, str] | None = None,
        ) -> JobRequest:
            job_id = f"job-{uuid.uuid4().hex[:8]}"
            base = executor.base_dir(job_id)
            base.mkdir(parents=True)
            return JobRequest(
                job_id=job_id,
                module="m",
                command=["/bin/sh", "-c", script],
                base_dir=base,
                env=env or {},
                max_execution=max_execution,
            )

        return make


async def test_a_second_executor_adopts_a_running_job_and_sees_its_exit_code(
    tmp_path: Path,
) -> None:
    first = LocalExecutor(tmp_path / "jobs")
    base = first.base_dir("j1")
    base.mkdir(parents=True)
    await first.submit(
        JobRequest(
            job_id="j1", module="m", command=["/bin/sh", "-c", "sleep 0.5; exit 4"], base_dir=base
        )
    )
    second = LocalExecutor(tmp_path / "jobs")  # as after a dispatcher restart
    assert (await second.status("j1")).state == JobState.RUNNING
    again = await second.submit(
        JobRequest(
            job_id="j1", module="m", command=["/bin/sh", "-c", "echo SHOULD-NOT-RUN"], base_dir=base
        )
    )
    assert again.state == JobState.RUNNING
    final = await second.wait("j1")
    assert (final.state, final.exit_code) == (JobState.FAILED, 4)
    assert b"SHOULD-NOT-RUN" not in await second.logs("j1")


async def test_a_job_that_vanished_without_an_exit_code_is_lost(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "jobs")
    base = executor.base_dir("j2")
    base.mkdir(parents=True)
    await executor.submit(
        JobRequest(job_id="j2", module="m", command=["sleep", "30"], base_dir=base)
    )
    await executor.cancel("j2")
    assert (await LocalExecutor(tmp_path / "jobs").status("j2")).state == JobState.LOST


def test_image_only_modules_run_in_a_container_with_the_job_dir_at_ion(tmp_path: Path) -> None:
    job = JobRequest(
        job_id="j", module="m", image="example/resize:1", env={"SIZE": "3"}, base_dir=tmp_path
    )
    argv = container_argv("podman", job)
    assert argv[:3] == ["podman", "run", "--rm"]
    assert f"{tmp_path}:/ion" in argv and "HANDLER_BASE_DIR=/ion" in argv
    assert argv[argv.index("SIZE") - 1] == "-e"
    assert argv[-1] == "example/resize:1"
