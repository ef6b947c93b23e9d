"""The Executor contract: every executor's test module subclasses `ExecutorContract`.

A subclass provides `executor` (a fresh executor) and `request` (a factory of JobRequests for a
shell command in a fresh base directory).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from ion.core import errors
from ion.core.ports.executor import Executor, JobRequest, JobState

RequestFactory = Callable[..., JobRequest]


class ExecutorContract:
    """What every Executor promises."""

    async def test_a_job_runs_to_success_with_its_logs(
        self, executor: Executor, request_factory: RequestFactory
    ) -> None:
        job = request_factory("echo hello from $HANDLER_BASE_DIR; echo to-stderr >&2")
        await executor.submit(job)
        status = await executor.wait(job.job_id)
        assert (status.state, status.exit_code) == (JobState.SUCCEEDED, 0)
        logs = await executor.logs(job.job_id)
        assert f"hello from {job.base_dir}".encode() in logs
        assert b"to-stderr" in logs

    async def test_a_failing_job_reports_its_exit_code(
        self, executor: Executor, request_factory: RequestFactory
    ) -> None:
        job = request_factory("exit 7")
        await executor.submit(job)
        status = await executor.wait(job.job_id)
        assert (status.state, status.exit_code, status.timed_out) == (JobState.FAILED, 7, False)

    async def test_submitting_the_same_job_twice_runs_it_once(
        self, executor: Executor, request_factory: RequestFactory
    ) -> None:
        job = request_factory('echo run >> "$HANDLER_BASE_DIR/../runs"; sleep 0.3')
        await executor.submit(job)
        again = await executor.submit(job)
        assert again.state in (JobState.RUNNING, JobState.SUCCEEDED)
        await executor.wait(job.job_id)
        assert (job.base_dir.parent / "runs").read_text().count("run") == 1

    async def test_a_job_past_its_deadline_is_killed(
        self, executor: Executor, request_factory: RequestFactory
    ) -> None:
        job = request_factory("sleep 30", max_execution=timedelta(seconds=0.5))
        await executor.submit(job)
        status = await executor.wait(job.job_id)
        assert status.state == JobState.FAILED and status.timed_out

    async def test_env_reaches_the_module(
        self, executor: Executor, request_factory: RequestFactory
    ) -> None:
        job = request_factory('test "$COLOUR" = blue', env={"COLOUR": "blue"})
        await executor.submit(job)
        assert (await executor.wait(job.job_id)).state == JobState.SUCCEEDED

    async def test_cancel_stops_a_running_job(
        self, executor: Executor, request_factory: RequestFactory
    ) -> None:
        job = request_factory("sleep 30")
        await executor.submit(job)
        await executor.cancel(job.job_id)
        status = await executor.status(job.job_id)
        assert status.state != JobState.RUNNING

    async def test_unknown_jobs_are_not_found_and_listing_shows_known_ones(
        self, executor: Executor, request_factory: RequestFactory
    ) -> None:
        with pytest.raises(errors.NotFoundError):
            await executor.status("no-such-job")
        job = request_factory("true")
        await executor.submit(job)
        await executor.wait(job.job_id)
        assert job.job_id in [s.job_id for s in await executor.list_jobs()]
        await executor.delete(job.job_id)
        await executor.delete(job.job_id)
