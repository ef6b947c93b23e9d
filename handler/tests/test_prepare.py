"""Prepare: a clean job tree, the parent's files (sub-directories too) and data, or a clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ion.core import errors
from ion.core.events import EventMeta, KeyValuePair, pairs
from ion.core.testing.embedded import EmbeddedBackends
from ion.handler.job import HandlerJob
from ion.handler.prepare import prepare


def write(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def prefix_of(job: HandlerJob) -> str:
    """Where the parent module's commit put its outputs."""
    ctx = job.event.context
    return f"{ctx.correlation_id}/{ctx.parent_event_id}/{ctx.name}"


async def stage_parent(
    backends: EmbeddedBackends,
    job: HandlerJob,
    tmp_path: Path,
    *,
    files: dict[str, bytes],
    listed: list[str] | None = None,
    data: list[KeyValuePair] | None = None,
    with_prefix: bool = True,
) -> None:
    """Store the parent's outputs and the eventMeta of the job's incoming event."""
    prefix = prefix_of(job)
    for name, content in files.items():
        src = write(tmp_path / "parent-out" / name, content)
        await backends.blobs.put_file(f"{prefix}/{name}", src)
    await backends.meta.upsert_event_meta(
        EventMeta(
            id=job.event.event_id,
            context=job.event.context,
            type=job.event.type,
            files=list(files) if listed is None else listed,
            data=data or [],
            files_prefix=prefix if with_prefix else "",
        )
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden ones too), by relative path."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


async def test_prepare_builds_a_clean_layout(backends: EmbeddedBackends, job: HandlerJob) -> None:
    lay = job.layout
    write(lay.in_data / "stale.bin")
    write(lay.out_data / "old" / "output.bin")
    write(lay.out_events / "old.json", b"[]")
    write(lay.out_insights, b'[{"key": "k", "value": "v"}]')
    write(lay.in_eventmeta, b'[{"key": "stale", "value": "1"}]')

    result = await prepare(job, blobs=backends.blobs, meta=backends.meta)

    assert result.files == []
    assert lay.in_data.is_dir() and tree(lay.in_data) == {}
    assert lay.out_data.is_dir() and tree(lay.out_data) == {}
    assert lay.out_events.is_dir() and tree(lay.out_events) == {}
    assert lay.out_insights.read_bytes() == b""
    assert not lay.in_eventmeta.exists()


async def test_eventmeta_json_is_written_when_there_is_data(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    data = pairs([("url", "http://example.org/x"), ("ünï", "cødé")])
    await stage_parent(backends, job, tmp_path, files={}, data=data)
    result = await prepare(job, blobs=backends.blobs, meta=backends.meta)
    assert json.loads(job.layout.in_eventmeta.read_text()) == [
        {"key": "url", "value": "http://example.org/x"},
        {"key": "ünï", "value": "cødé"},
    ]
    assert result.data == data


async def test_no_eventmeta_json_when_the_parent_has_no_data(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await stage_parent(backends, job, tmp_path, files={}, data=[])
    await prepare(job, blobs=backends.blobs, meta=backends.meta)
    assert not job.layout.in_eventmeta.exists()


async def test_parent_files_arrive_with_their_sub_directories(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    files = {
        "top.txt": b"top",
        "frames/0001.png": os.urandom(3000),
        "deep/er/still/data.bin": os.urandom(2 * 1024 * 1024 + 3),
        "empty.txt": b"",
    }
    await stage_parent(backends, job, tmp_path, files=files)
    result = await prepare(job, blobs=backends.blobs, meta=backends.meta)
    assert tree(job.layout.in_data) == files
    assert sorted(result.files) == sorted(files)


async def test_a_2018_document_without_a_prefix_uses_the_2018_blob_layout(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await stage_parent(backends, job, tmp_path, files={"file.raw": b"raw"}, with_prefix=False)
    await prepare(job, blobs=backends.blobs, meta=backends.meta)
    assert tree(job.layout.in_data) == {"file.raw": b"raw"}


async def test_empty_file_entries_are_no_file(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await stage_parent(backends, job, tmp_path, files={"a.txt": b"a"}, listed=["", "a.txt", "  "])
    result = await prepare(job, blobs=backends.blobs, meta=backends.meta)
    assert result.files == ["a.txt"]
    assert tree(job.layout.in_data) == {"a.txt": b"a"}


async def test_a_missing_blob_is_an_error_and_leaves_no_partial_file(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    await stage_parent(
        backends,
        job,
        tmp_path,
        # Large enough to be mid-copy when the missing one fails.
        files={"present.bin": b"\x01" * (48 * 1024 * 1024)},
        listed=["present.bin", "sub/missing.bin"],
    )
    with pytest.raises(errors.NotFoundError) as caught:
        await prepare(job, blobs=backends.blobs, meta=backends.meta)
    assert "sub/missing.bin" in str(caught.value)
    got = tree(job.layout.in_data)
    assert "sub/missing.bin" not in got
    assert not [name for name in got if name.endswith(".part") or "/." in f"/{name}"]
    # Whatever did arrive is whole, never a truncated copy.
    for name, content in got.items():
        assert content == (tmp_path / "parent-out" / name).read_bytes()


@pytest.mark.parametrize("name", ["../escaped.txt", "/etc/passwd", "sub/../../escaped.txt"])
async def test_parent_file_names_leaving_in_data_are_refused(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path, name: str
) -> None:
    await stage_parent(backends, job, tmp_path, files={}, listed=[name])
    with pytest.raises(errors.PathEscapeError):
        await prepare(job, blobs=backends.blobs, meta=backends.meta)
    assert not (job.layout.base / "in" / "escaped.txt").exists()
    assert not (job.layout.base / "escaped.txt").exists()
    assert tree(job.layout.in_data) == {}


async def test_a_root_event_without_eventmeta_uses_the_events_own_data(
    backends: EmbeddedBackends, job: HandlerJob
) -> None:
    event = job.event.model_copy(update={"data": pairs({"url": "http://example.org/v.mp4"})})
    root_job = HandlerJob(
        module=job.module, event=event, publishes=job.publishes, layout=job.layout
    )
    result = await prepare(root_job, blobs=backends.blobs, meta=backends.meta)
    assert result.files == []
    assert json.loads(job.layout.in_eventmeta.read_text()) == [
        {"key": "url", "value": "http://example.org/v.mp4"}
    ]


async def test_prepare_twice_gives_the_same_tree(
    backends: EmbeddedBackends, job: HandlerJob, tmp_path: Path
) -> None:
    files = {"a.txt": b"a", "s/b.txt": b"b"}
    await stage_parent(backends, job, tmp_path, files=files, data=pairs({"k": "v"}))
    await prepare(job, blobs=backends.blobs, meta=backends.meta)
    write(job.layout.out_data / "leftover-from-a-failed-attempt.bin")
    await prepare(job, blobs=backends.blobs, meta=backends.meta)
    assert tree(job.layout.in_data) == files
    assert tree(job.layout.out_data) == {}
