"""The local executor passes the Executor contract and survives a restart at any point."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from ion.core import errors
from ion.core.ports.executor import JobRequest, JobState
from ion.core.testing.embedded import EmbeddedBackends
from ion.core.testing.executor_contract import ExecutorContract, RequestFactory
from ion.dispatcher.executors.local import LocalExecutor, container_argv, local_command


def local(backends: EmbeddedBackends, jobs: Path) -> LocalExecutor:
    return LocalExecutor(jobs, bus=backends.bus, blobs=backends.blobs, meta=backends.meta)


class TestLocalExecutor(ExecutorContract):
    @pytest.fixture
    def executor(self, backends: EmbeddedBackends, tmp_path: Path) -> LocalExecutor:
        return local(backends, tmp_path / "jobs")


contract = ExecutorContract()
backends = contract.backends
request_factory = contract.request_factory


async def test_a_second_executor_adopts_a_running_module_and_commits_it_once(
    backends: EmbeddedBackends, request_factory: RequestFactory, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    job = request_factory(
        f"echo run >> {runs}; sleep 0.5; echo made > $HANDLER_BASE_DIR/out/data/x"
    )
    first = local(backends, tmp_path / "jobs")
    await first.submit(job)
    while not runs.exists():
        await asyncio.sleep(0.02)
    first_driver = first._drivers[job.job_id]
    first_driver.cancel()  # as if the dispatcher died: the module keeps running on its own
    await asyncio.gather(first_driver, return_exceptions=True)
    second = local(backends, tmp_path / "jobs")  # as after a restart
    assert (await second.status(job.job_id)).state == JobState.RUNNING
    again = await second.submit(job)
    assert again.state == JobState.RUNNING
    result = await second.wait(job.job_id)
    assert result.state == JobState.SUCCEEDED, result.reason
    assert runs.read_text() == "run\n"
    assert len(result.outputs) == 1


async def test_a_module_killed_from_outside_fails_and_is_not_run_again(
    backends: EmbeddedBackends, request_factory: RequestFactory, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    job = request_factory(f"echo run >> {runs}; sleep 30")
    first = local(backends, tmp_path / "jobs")
    await first.submit(job)
    while not runs.exists():
        await asyncio.sleep(0.02)
    first_driver = first._drivers[job.job_id]
    first_driver.cancel()
    await asyncio.gather(first_driver, return_exceptions=True)
    started = next((tmp_path / "jobs" / job.job_id).glob("run-*.started"))
    os.killpg(int(started.read_text()), signal.SIGKILL)
    result = await local(backends, tmp_path / "jobs").wait(job.job_id)
    assert result.state == JobState.FAILED
    assert "vanished without an exit code" in result.reason
    assert runs.read_text() == "run\n"


async def test_a_job_recorded_but_never_started_is_started_by_the_next_process(
    backends: EmbeddedBackends, request_factory: RequestFactory, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    job = request_factory(f"echo run >> {runs}")
    jobs = tmp_path / "jobs"
    # As if killed right after job.json was written: the request is there, nothing else.
    (jobs / job.job_id).mkdir(parents=True)
    (jobs / job.job_id / "job.json").write_text(job.model_dump_json())
    result = await local(backends, jobs).wait(job.job_id)
    assert result.state == JobState.SUCCEEDED, result.reason
    assert runs.read_text() == "run\n"


async def test_a_stale_exit_code_of_an_earlier_run_is_never_read(
    backends: EmbeddedBackends, request_factory: RequestFactory, tmp_path: Path
) -> None:
    job = request_factory("exit 0")
    jobs = tmp_path / "jobs"
    (jobs / job.job_id).mkdir(parents=True)
    (jobs / job.job_id / "job.json").write_text(job.model_dump_json())
    (jobs / job.job_id / "exit_code").write_text("3")  # the 9dad5e2 layout's leftover
    (jobs / job.job_id / "run-old.exit").write_text("3")
    result = await local(backends, jobs).wait(job.job_id)
    assert result.state == JobState.SUCCEEDED, result.reason


async def test_a_missing_working_directory_is_a_reason_not_a_traceback(
    backends: EmbeddedBackends, request_factory: RequestFactory, tmp_path: Path
) -> None:
    job = request_factory("true")
    job = job.model_copy(update={"working_dir": tmp_path / "nowhere"})
    executor = local(backends, tmp_path / "jobs")
    await executor.submit(job)
    result = await executor.wait(job.job_id)
    assert result.state == JobState.FAILED
    assert "working directory" in result.reason and "nowhere" in result.reason


async def test_a_command_that_does_not_exist_fails_with_the_shell_s_words(
    backends: EmbeddedBackends, request_factory: RequestFactory, tmp_path: Path
) -> None:
    job = request_factory("true")
    job = job.model_copy(
        update={"spec": job.spec.model_copy(update={"command": ["no-such-program-here"]})}
    )
    executor = local(backends, tmp_path / "jobs")
    await executor.submit(job)
    result = await executor.wait(job.job_id)
    assert (result.state, result.exit_code) == (JobState.FAILED, 127)
    assert "no-such-program-here" in result.reason


def test_image_only_modules_run_in_a_container_with_the_job_dir_at_ion(
    request_factory: RequestFactory, tmp_path: Path
) -> None:
    job: JobRequest = request_factory("true")
    spec = job.spec.model_copy(
        update={"command": [], "image": "example/resize:1", "env": {"SIZE": "3"}}
    )
    argv = container_argv("podman", job.model_copy(update={"spec": spec}), tmp_path)
    assert argv[:3] == ["podman", "run", "--rm"]
    assert f"{tmp_path}:/ion" in argv and "HANDLER_BASE_DIR=/ion" in argv
    assert argv[argv.index("SIZE") - 1] == "-e"
    assert argv[-1] == "example/resize:1"


async def test_a_hostile_insights_file_is_a_refused_commit_not_a_crash(
    backends: EmbeddedBackends, request_factory: RequestFactory, tmp_path: Path
) -> None:
    job = request_factory(
        "python3 -c \"print('[' * 200000)\" > $HANDLER_BASE_DIR/out/insights.json"
    )
    executor = local(backends, tmp_path / "jobs")
    await executor.submit(job)
    result = await executor.wait(job.job_id)
    assert (result.state, result.commit_refused) == (JobState.FAILED, True)
    assert "insights.json" in result.reason


async def test_a_request_cut_short_by_a_kill_is_unknown_and_submitting_starts_it(
    backends: EmbeddedBackends, request_factory: RequestFactory, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    job = request_factory(f"echo run >> {runs}")
    jobs = tmp_path / "jobs"
    (jobs / job.job_id).mkdir(parents=True)
    (jobs / job.job_id / "job.json").write_text(job.model_dump_json()[:40])  # killed mid-write
    executor = local(backends, jobs)
    with pytest.raises(errors.NotFoundError):
        await executor.status(job.job_id)
    await executor.submit(job)
    result = await executor.wait(job.job_id)
    assert result.state == JobState.SUCCEEDED, result.reason
    assert runs.read_text() == "run\n"


def test_python_means_ion_s_interpreter_only_for_a_local_process() -> None:
    assert local_command(["python", "m.py", "python"]) == [sys.executable, "m.py", "python"]
    assert local_command(["python3", "-u", "m.py"]) == [sys.executable, "-u", "m.py"]
    assert local_command(["/usr/bin/python", "m.py"]) == ["/usr/bin/python", "m.py"]
    assert local_command([]) == []
