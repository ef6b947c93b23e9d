"""The Executor contract: every executor's test module subclasses `ExecutorContract`.

A job is prepare → module → commit, so the suite gives each executor real embedded backends
(`backends`, under tmp_path) and builds requests for a shell-script module
(`request_factory`); a subclass provides `executor(backends, tmp_path)`. Each test checks what
the job did through the backends, not only what the executor says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from ion.core import errors
from ion.core.events import EventMeta, ModuleLogs, new_root_event
from ion.core.modules import ModuleSpec
from ion.core.ports.executor import Executor, JobPhase, JobRequest, JobState
from ion.core.testing.embedded import EmbeddedBackends

RequestFactory = Callable[..., JobRequest]

WRITES_A_CHILD = """
echo made > "$HANDLER_BASE_DIR/out/data/result.txt"
printf '[{"key":"eventType","value":"thing.done"},{"key":"files","value":"result.txt"}]' \\
  > "$HANDLER_BASE_DIR/out/events/done.json"
"""


class ExecutorContract:
    """What every Executor promises."""

    @pytest.fixture
    async def backends(self, tmp_path: Path) -> AsyncIterator[EmbeddedBackends]:
        """Embedded backends the jobs read from and write to."""
        found = EmbeddedBackends.open(tmp_path / "backends")
        await found.watch("thing.done")
        yield found
        for backend in (found.bus, found.blobs, found.meta):
            await backend.aclose()

    @pytest.fixture
    def request_factory(self, tmp_path: Path) -> RequestFactory:
        """Build the request of a fresh job running `script` with /bin/sh."""
        counter = iter(range(1, 1_000_000))

        def make(
            script: str,
            *,
            max_execution: timedelta = timedelta(seconds=30),
            env: dict[str, str] | None = None,
            publishes: tuple[str, ...] = ("thing.done",),
            attempt: int = 1,
        ) -> JobRequest:
            event = new_root_event("thing.new", data={"colour": "blue"})
            spec = ModuleSpec(
                name="maker",
                subscribes_to="thing.new",
                publishes=list(publishes),
                command=["/bin/sh", "-c", script],
                env=env or {},
                max_execution_seconds=max_execution.total_seconds(),
            )
            return JobRequest(
                job_id=f"maker-job-{next(counter)}-a{attempt}",
                attempt=attempt,
                event=event,
                spec=spec,
                working_dir=tmp_path,
            )

        return make

    async def test_a_job_prepares_runs_and_commits_with_its_logs_stored(
        self, executor: Executor, request_factory: RequestFactory, backends: EmbeddedBackends
    ) -> None:
        job = request_factory(
            'cat "$HANDLER_BASE_DIR/in/eventmeta.json"; echo to-stderr >&2' + WRITES_A_CHILD
        )
        await backends.meta.upsert_event_meta(
            EventMeta(
                id=job.event.event_id,
                context=job.event.context,
                type=job.event.type,
                data=job.event.data,
            )
        )
        await executor.submit(job)
        result = await executor.wait(job.job_id)
        assert (result.state, result.exit_code, result.phase) == (JobState.SUCCEEDED, 0, None)
        prefix = f"{job.event.correlation_id}/{job.event.event_id}/maker"
        assert result.outputs == [f"{prefix}/result.txt"]
        published = await backends.published("thing.done")
        assert [m.message_id for m in published] == result.child_event_ids
        assert len(result.child_event_ids) == 1
        stored = await _read_blob(backends, result.logs_ref, job)
        assert b'"colour"' in stored and b"to-stderr" in stored  # the parent's data reached it
        docs = await backends.meta.list_documents(job.event.correlation_id)
        assert [d.succeeded for d in docs if isinstance(d, ModuleLogs)] == [True]

    async def test_a_failing_module_reports_its_exit_code_and_last_output(
        self, executor: Executor, request_factory: RequestFactory, backends: EmbeddedBackends
    ) -> None:
        job = request_factory("echo first line; echo 'cannot open model.bin' >&2; exit 7")
        await executor.submit(job)
        result = await executor.wait(job.job_id)
        assert (result.state, result.phase, result.exit_code) == (
            JobState.FAILED,
            JobPhase.MODULE,
            7,
        )
        assert "exited with code 7" in result.reason
        assert "cannot open model.bin" in result.reason
        assert await backends.published("thing.done") == []

    async def test_a_refused_commit_is_a_failure_in_the_result_the_log_and_modulelogs(
        self, executor: Executor, request_factory: RequestFactory, backends: EmbeddedBackends
    ) -> None:
        job = request_factory(
            'printf \'[{"key":"eventType","value":"not.declared"}]\' '
            '> "$HANDLER_BASE_DIR/out/events/bad.json"'
        )
        await executor.submit(job)
        result = await executor.wait(job.job_id)
        assert result.state == JobState.FAILED and result.commit_refused
        assert (result.phase, result.exit_code) == (JobPhase.COMMIT, 0)
        assert "not.declared" in result.reason
        stored = await _read_blob(backends, result.logs_ref, job)
        assert b"commit refused" in stored
        docs = await backends.meta.list_documents(job.event.correlation_id)
        assert [d.succeeded for d in docs if isinstance(d, ModuleLogs)] == [False]
        assert await backends.published("thing.done") == []

    async def test_a_failed_prepare_names_the_cause_and_never_runs_the_module(
        self,
        executor: Executor,
        request_factory: RequestFactory,
        backends: EmbeddedBackends,
        tmp_path: Path,
    ) -> None:
        marker = tmp_path / "ran"
        job = request_factory(f"touch {marker}")
        await backends.meta.upsert_event_meta(
            EventMeta(
                id=job.event.event_id,
                context=job.event.context,
                type=job.event.type,
                files=["photo.jpg"],
                files_prefix="nowhere",
            )
        )
        await executor.submit(job)
        result = await executor.wait(job.job_id)
        assert (result.state, result.phase) == (JobState.FAILED, JobPhase.PREPARE)
        assert "photo.jpg" in result.reason
        assert not marker.exists()

    async def test_submitting_the_same_job_twice_runs_it_once(
        self, executor: Executor, request_factory: RequestFactory, tmp_path: Path
    ) -> None:
        runs = tmp_path / "runs"
        job = request_factory(f"echo run >> {runs}; sleep 0.3")
        await executor.submit(job)
        again = await executor.submit(job)
        assert again.state in (JobState.RUNNING, JobState.SUCCEEDED)
        await executor.wait(job.job_id)
        assert runs.read_text().count("run") == 1

    async def test_a_job_past_its_deadline_is_killed(
        self, executor: Executor, request_factory: RequestFactory
    ) -> None:
        job = request_factory("echo started; sleep 30", max_execution=timedelta(seconds=0.5))
        await executor.submit(job)
        result = await executor.wait(job.job_id)
        assert (result.state, result.phase, result.timed_out) == (
            JobState.FAILED,
            JobPhase.MODULE,
            True,
        )
        assert "max execution time of 0.5s" in result.reason and "started" in result.reason

    async def test_env_reaches_the_module(
        self, executor: Executor, request_factory: RequestFactory
    ) -> None:
        job = request_factory('test "$COLOUR" = blue', env={"COLOUR": "blue"})
        await executor.submit(job)
        assert (await executor.wait(job.job_id)).state == JobState.SUCCEEDED

    async def test_cancel_stops_a_running_job(
        self, executor: Executor, request_factory: RequestFactory, tmp_path: Path
    ) -> None:
        started = tmp_path / "started"
        job = request_factory(f"touch {started}; sleep 30")
        await executor.submit(job)
        while not started.exists():
            status = await executor.status(job.job_id)
            assert status.state == JobState.RUNNING
            await asyncio.sleep(0.02)
        await executor.cancel(job.job_id)
        result = await executor.wait(job.job_id)
        assert result.state == JobState.FAILED and "cancelled" in result.reason

    async def test_unknown_jobs_are_not_found_and_listing_shows_known_ones(
        self, executor: Executor, request_factory: RequestFactory
    ) -> None:
        with pytest.raises(errors.NotFoundError):
            await executor.status("no-such-job")
        with pytest.raises(errors.NotFoundError):
            await executor.wait("no-such-job")
        job = request_factory("true")
        await executor.submit(job)
        await executor.wait(job.job_id)
        assert job.job_id in [s.job_id for s in await executor.list_jobs()]
        await executor.delete(job.job_id)
        await executor.delete(job.job_id)


async def _read_blob(backends: EmbeddedBackends, key: str, job: JobRequest) -> bytes:
    assert key, f"job {job.job_id} stored no logs"
    chunks = [c async for c in backends.blobs.get_stream(key)]
    return b"".join(chunks)


__all__ = ["ExecutorContract", "RequestFactory"]
