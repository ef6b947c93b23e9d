"""`ion-handler prepare | commit | run` (and the 2018 `start --action=`) as real subprocesses.

Each test points the handler at SQLite and filesystem backends under tmp_path through
ION_BUS__URL / ION_BLOBS__URL / ION_META__URL, and checks files, rows and messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ion.core.events import EventMeta, child_event_id, pairs
from ion.core.testing.embedded import EmbeddedBackends
from ion.handler.job import HandlerJob

HANDLER = Path(sys.executable).with_name("ion-handler")


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


def job_args(job: HandlerJob, *, basedir: bool = True) -> list[str]:
    ctx = job.event.context
    args = [
        f"--context.name={job.module}",
        f"--context.eventid={ctx.event_id}",
        f"--context.correlationid={ctx.correlation_id}",
        f"--context.parenteventid={ctx.parent_event_id}",
        f"--event-type={job.event.type}",
        f"--valideventtypes={','.join(sorted(job.publishes))}",
    ]
    if basedir:
        args.append(f"--basedir={job.layout.base}")
    return args


async def handler(
    backends: EmbeddedBackends, *args: str, env: dict[str, str] | None = None
) -> Completed:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("ION_", "HANDLER_"))}
    proc = await asyncio.create_subprocess_exec(
        str(HANDLER),
        *args,
        env={**base_env, **backends.env, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Completed(proc.returncode, out.decode(), err.decode())


def assert_one_line_error(result: Completed, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ion-handler: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


async def stage_parent(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path, files: dict[str, bytes]
) -> None:
    ctx = job.event.context
    prefix = f"{ctx.correlation_id}/{ctx.parent_event_id}/{ctx.name}"
    for name, content in files.items():
        src = tmp_path / "parent" / name
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(content)
        await backends.blobs.put_file(f"{prefix}/{name}", src)
    await backends.meta.upsert_event_meta(
        EventMeta(
            id=ctx.event_id,
            context=ctx,
            type=job.event.type,
            files=list(files),
            data=pairs({"source": "camera-7"}),
            files_prefix=prefix,
        )
    )


def write_outputs(job: HandlerJob) -> None:
    out = job.layout.out_data
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    (out / "thumbs" / "small.png").write_bytes(b"small")
    (job.layout.out_events / "e1.json").write_text(
        json.dumps(
            [
                {"key": "eventType", "value": "image.small"},
                {"key": "files", "value": "thumbs/small.png"},
            ]
        )
    )
    job.layout.out_insights.write_text('[{"key": "faces", "value": "2"}]')


async def test_prepare_downloads_the_parents_files(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await stage_parent(backends, job, tmp_path, {"a.jpg": b"jpeg", "burst/2.jpg": b"two"})
    result = await handler(backends, "prepare", *job_args(job))
    assert result.returncode == 0, result.stderr
    assert (job.layout.in_data / "a.jpg").read_bytes() == b"jpeg"
    assert (job.layout.in_data / "burst" / "2.jpg").read_bytes() == b"two"
    assert json.loads(job.layout.in_eventmeta.read_text()) == [
        {"key": "source", "value": "camera-7"}
    ]
    assert job.layout.out_data.is_dir() and job.layout.out_events.is_dir()


async def test_handler_base_dir_is_honoured(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await stage_parent(backends, job, tmp_path, {"a.jpg": b"jpeg"})
    result = await handler(
        backends,
        "prepare",
        *job_args(job, basedir=False),
        env={"HANDLER_BASE_DIR": str(job.layout.base)},
    )
    assert result.returncode == 0, result.stderr
    assert (job.layout.in_data / "a.jpg").read_bytes() == b"jpeg"


async def test_commit_uploads_stores_and_publishes(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await backends.watch("image.small")
    await stage_parent(backends, job, tmp_path, {})
    assert (await handler(backends, "prepare", *job_args(job))).returncode == 0
    write_outputs(job)

    result = await handler(backends, "commit", *job_args(job))

    assert result.returncode == 0, result.stderr
    ctx = job.event.context
    prefix = f"{ctx.correlation_id}/{ctx.event_id}/resize"
    assert await backends.blob_keys(prefix) == [f"{prefix}/thumbs/small.png"]
    child = child_event_id(ctx.event_id, "resize", "e1.json")
    assert [m.message_id for m in await backends.published("image.small")] == [child]
    docs = await backends.meta.list_documents(ctx.correlation_id)
    assert {d.context.document_type for d in docs} == {"eventMeta", "insight"}
    meta = await backends.meta.get_event_meta(ctx.correlation_id, child)
    assert meta.files == ["thumbs/small.png"]


async def test_the_2018_start_action_form_works(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await backends.watch("image.small")
    await stage_parent(backends, job, tmp_path, {"a.jpg": b"jpeg"})
    prepared = await handler(backends, "start", "--action=prepare", *job_args(job))
    assert prepared.returncode == 0, prepared.stderr
    assert (job.layout.in_data / "a.jpg").read_bytes() == b"jpeg"
    write_outputs(job)
    committed = await handler(backends, "start", "-a", "commit", *job_args(job))
    assert committed.returncode == 0, committed.stderr
    assert len(await backends.published("image.small")) == 1


async def test_run_prepares_runs_and_commits(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await backends.watch("image.small")
    await stage_parent(backends, job, tmp_path, {"a.jpg": b"jpeg"})
    module = (
        'cd "$HANDLER_BASE_DIR" && mkdir -p out/data/copies && '
        "cp in/data/a.jpg out/data/copies/a.jpg && "
        'echo \'[{"key":"eventType","value":"image.small"},'
        '{"key":"files","value":"copies/a.jpg"}]\' > out/events/e.json && '
        "echo module-says-hello"
    )
    result = await handler(backends, "run", *job_args(job), "--", "sh", "-c", module)
    assert result.returncode == 0, result.stderr
    assert "module-says-hello" in result.stderr  # the module's log is shown
    ctx = job.event.context
    key = f"{ctx.correlation_id}/{ctx.event_id}/resize/copies/a.jpg"
    assert backends.blobs.path_of(key).read_bytes() == b"jpeg"
    assert len(await backends.published("image.small")) == 1


async def test_run_commits_nothing_when_the_module_fails(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await backends.watch("image.small")
    await stage_parent(backends, job, tmp_path, {})
    module = (
        'cd "$HANDLER_BASE_DIR" && echo data > out/data/partial.txt && '
        'echo \'[{"key":"eventType","value":"image.small"}]\' > out/events/e.json && exit 3'
    )
    result = await handler(backends, "run", *job_args(job), "--", "sh", "-c", module)
    assert result.returncode == 3
    assert_one_line_error(result, "exited 3", "nothing committed")
    ctx = job.event.context
    assert await backends.blob_keys(f"{ctx.correlation_id}/{ctx.event_id}") == []
    assert await backends.published("image.small") == []


async def test_run_kills_a_module_past_its_deadline(
    backends: EmbeddedBackends, job: HandlerJob
) -> None:
    result = await handler(
        backends, "run", *job_args(job), "--max-exec-seconds=0.3", "--", "sleep", "600"
    )
    assert_one_line_error(result, "timed out", "nothing committed")


async def test_a_bad_event_file_is_a_one_line_error(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await stage_parent(backends, job, tmp_path, {})
    assert (await handler(backends, "prepare", *job_args(job))).returncode == 0
    (job.layout.out_events / "e.json").write_text('[{"key": "eventType", "value": "image.huge"}]')
    result = await handler(backends, "commit", *job_args(job))
    assert result.returncode == 1
    assert_one_line_error(result, "image.huge", "out/events/e.json")


async def test_a_path_escape_is_a_one_line_error(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    assert (await handler(backends, "prepare", *job_args(job))).returncode == 0
    (job.layout.out_data / "link").symlink_to(tmp_path)
    result = await handler(backends, "commit", *job_args(job))
    assert_one_line_error(result, "link", "outside")


async def test_a_missing_input_is_a_one_line_error(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await stage_parent(backends, job, tmp_path, {"a.jpg": b"jpeg"})
    ctx = job.event.context
    await backends.blobs.delete(f"{ctx.correlation_id}/{ctx.parent_event_id}/{ctx.name}/a.jpg")
    result = await handler(backends, "prepare", *job_args(job))
    assert_one_line_error(result, "a.jpg", "missing")
    assert not (job.layout.in_data / "a.jpg").exists()


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("ION_BUS__URL", "carrier-pigeon://coop", "ION_BUS__URL"),
        ("ION_BLOBS__URL", "not a url", "ION_BLOBS__URL"),
        ("ION_BUS__LOCK_DURATION_SECONDS", "soon", "ION_BUS__LOCK_DURATION_SECONDS"),
    ],
)
async def test_a_bad_setting_is_a_one_line_error(
    backends: EmbeddedBackends, job: HandlerJob, variable: str, value: str, needle: str
) -> None:
    result = await handler(backends, "prepare", *job_args(job), env={variable: value})
    assert_one_line_error(result, needle)


async def test_a_missing_required_flag_is_a_usage_error(backends: EmbeddedBackends) -> None:
    result = await handler(backends, "prepare", "--context.name=resize")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--context.eventid" in result.stderr


async def test_help_lists_the_commands(backends: EmbeddedBackends) -> None:
    result = await handler(backends, "--help")
    assert result.returncode == 0
    for command in ("prepare", "commit", "run"):
        assert command in result.stdout
