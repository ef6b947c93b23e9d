"""Commit: outputs, insights and child events persisted exactly once, or nothing at all."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from ion.core import errors
from ion.core.backends.sqlite.bus import SqliteEventBus
from ion.core.events import Event, child_event_id, insight_id
from ion.core.ports.bus import EventBus, OutgoingMessage, SubscriptionOptions
from ion.core.testing.embedded import EmbeddedBackends
from ion.handler.commit import CommitResult, _output_files, commit
from ion.handler.job import HandlerJob
from ion.handler.prepare import build_layout

TOPICS = ("image.small", "image.tagged")


def write(path: Path, content: bytes | str = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def event_file(job: HandlerJob, name: str, items: list[tuple[str, str]]) -> Path:
    return write(
        job.layout.out_events / name, json.dumps([{"key": k, "value": v} for k, v in items])
    )


@pytest.fixture
async def ready(backends: EmbeddedBackends, job: HandlerJob) -> HandlerJob:
    """A prepared job directory whose output topics are watched."""
    build_layout(job.layout)
    await backends.watch(*TOPICS)
    return job


async def do_commit(
    job: HandlerJob, backends: EmbeddedBackends, bus: EventBus | None = None
) -> CommitResult:
    return await commit(job, blobs=backends.blobs, meta=backends.meta, bus=bus or backends.bus)


async def assert_nothing_written(backends: EmbeddedBackends, job: HandlerJob) -> None:
    assert await backends.blob_keys() == []
    assert await backends.meta.list_documents(job.event.correlation_id) == []
    for topic in TOPICS:
        assert await backends.published(topic) == []


async def test_every_output_file_is_uploaded_under_its_job_prefix(
    backends: EmbeddedBackends, ready: HandlerJob
) -> None:
    outputs = {
        "a.txt": b"alpha",
        "sub/dir/b.bin": os.urandom(5000),
        "sub/c.txt": b"",
        ".hidden": b"h",
    }
    for rel, content in outputs.items():
        write(ready.layout.out_data / rel, content)

    result = await do_commit(ready, backends)

    ctx = ready.event.context
    prefix = f"{ctx.correlation_id}/{ctx.event_id}/resize"
    assert sorted(result.outputs) == sorted(f"{prefix}/{rel}" for rel in outputs)
    assert await backends.blob_keys() == sorted(f"{prefix}/{rel}" for rel in outputs)
    for rel, content in outputs.items():
        assert backends.blobs.path_of(f"{prefix}/{rel}").read_bytes() == content


async def test_insights_are_stored_as_one_document(
    backends: EmbeddedBackends, ready: HandlerJob
) -> None:
    write(ready.layout.out_insights, '[{"key": "faces", "value": "3"}, {"key": "t", "value": "1"}]')
    await do_commit(ready, backends)
    docs = await backends.meta.list_documents(ready.event.correlation_id)
    assert [d.to_document() for d in docs] == [
        {
            "id": insight_id(ready.event.event_id, "resize"),
            "context": {
                "name": "resize",
                "eventId": ready.event.event_id,
                "correlationId": ready.event.correlation_id,
                "parentEventId": ready.event.context.parent_event_id,
                "documentType": "insight",
            },
            "data": [{"key": "faces", "value": "3"}, {"key": "t", "value": "1"}],
        }
    ]


async def test_an_empty_insights_file_stores_no_insight(
    backends: EmbeddedBackends, ready: HandlerJob
) -> None:
    await do_commit(ready, backends)  # prepare left an empty out/insights.json
    assert await backends.meta.list_documents(ready.event.correlation_id) == []


async def test_one_child_event_per_event_file_is_recorded_and_published(
    backends: EmbeddedBackends, ready: HandlerJob
) -> None:
    write(ready.layout.out_data / "small.png", b"png")
    write(ready.layout.out_data / "thumbs/1.png", b"1")
    event_file(
        ready,
        "e1.json",
        [("eventType", "image.small"), ("size", "64"), ("files", "small.png,thumbs/1.png")],
    )
    event_file(ready, "e2.json", [("eventType", "image.tagged"), ("tag", "cat")])

    result = await do_commit(ready, backends)

    e1 = child_event_id(ready.event.event_id, "resize", "e1.json")
    e2 = child_event_id(ready.event.event_id, "resize", "e2.json")
    assert [e.event_id for e in result.events] == [e1, e2]

    small = await backends.published("image.small")
    tagged = await backends.published("image.tagged")
    assert [m.message_id for m in small] == [e1]
    assert [m.message_id for m in tagged] == [e2]
    event = Event.from_json(small[0].body)
    assert event.type == "image.small"
    assert event.context.name == "resize"
    assert event.context.parent_event_id == ready.event.event_id
    assert event.correlation_id == ready.event.correlation_id
    assert event.context.document_type == "eventMeta"
    assert event.data == []  # rich data lives in eventMeta, as in 2018

    meta = await backends.meta.get_event_meta(ready.event.correlation_id, e1)
    assert meta.files == ["small.png", "thumbs/1.png"]
    assert meta.type == "image.small"
    assert meta.files_prefix == f"{ready.event.correlation_id}/{ready.event.event_id}/resize"
    # The file URL pairs sit where the `files` key stood: after `size`.
    assert [p.key for p in meta.data] == ["size", "small.png", "thumbs/1.png"]
    assert meta.data[1].value.endswith("/resize/small.png")
    tagged_meta = await backends.meta.get_event_meta(ready.event.correlation_id, e2)
    assert [(p.key, p.value) for p in tagged_meta.data] == [("tag", "cat")]


async def test_a_child_reaches_every_subscriber_of_its_type(
    backends: EmbeddedBackends, ready: HandlerJob
) -> None:
    await backends.bus.ensure_subscription("image.small", "other-module", SubscriptionOptions())
    event_file(ready, "e.json", [("eventType", "image.small")])
    await do_commit(ready, backends)
    assert len(await backends.published("image.small")) == 1
    assert len(await backends.bus.peek("image.small", "other-module")) == 1


async def test_an_event_type_nobody_subscribes_to_yet_is_accepted(
    backends: EmbeddedBackends, job: HandlerJob
) -> None:
    build_layout(job.layout)  # no watcher: the topic does not exist yet
    event_file(job, "e.json", [("eventType", "image.small")])
    result = await do_commit(job, backends)
    assert len(result.events) == 1


@pytest.mark.parametrize(
    ("name", "content", "rule"),
    [
        ("undeclared.json", [("eventType", "image.huge")], "event-type-declared"),
        ("untyped.json", [("k", "v")], "event-type-required"),
        ("ghost.json", [("eventType", "image.small"), ("files", "ghost.png")], "file-exists"),
        ("broken.json", None, "json"),
        ("number.json", [("eventType", "image.small"), ("n", 3)], "string-value"),
    ],
)
async def test_a_bad_event_file_fails_the_commit_and_writes_nothing(
    backends: EmbeddedBackends,
    ready: HandlerJob,
    name: str,
    content: list[tuple[str, object]] | None,
    rule: str,
) -> None:
    write(ready.layout.out_data / "big.bin", os.urandom(100_000))
    write(ready.layout.out_data / "small.png", b"png")
    write(ready.layout.out_insights, '[{"key": "k", "value": "v"}]')
    event_file(ready, "a-good.json", [("eventType", "image.small"), ("files", "small.png")])
    if content is None:
        write(ready.layout.out_events / name, "[{")
    else:
        write(
            ready.layout.out_events / name,
            json.dumps([{"key": k, "value": v} for k, v in content]),
        )

    with pytest.raises(errors.ValidationError) as caught:
        await do_commit(ready, backends)

    assert caught.value.rule == rule
    assert name in str(caught.value)
    await assert_nothing_written(backends, ready)


async def test_bad_insights_fail_the_commit_and_write_nothing(
    backends: EmbeddedBackends, ready: HandlerJob
) -> None:
    write(ready.layout.out_data / "a.txt", b"a")
    event_file(ready, "e.json", [("eventType", "image.small")])
    write(ready.layout.out_insights, '{"key": "not an array"}')
    with pytest.raises(errors.ValidationError, match="insights"):
        await do_commit(ready, backends)
    await assert_nothing_written(backends, ready)


async def test_a_symlink_out_of_out_data_is_refused_and_nothing_is_written(
    backends: EmbeddedBackends, ready: HandlerJob, tmp_path: Path
) -> None:
    secret = write(tmp_path / "secret.txt", b"do not upload")
    write(ready.layout.out_data / "real.txt", b"fine")
    os.symlink(secret, ready.layout.out_data / "innocent.txt")
    event_file(ready, "e.json", [("eventType", "image.small")])
    with pytest.raises(errors.PathEscapeError, match=r"innocent\.txt"):
        await do_commit(ready, backends)
    await assert_nothing_written(backends, ready)


async def test_a_symlinked_directory_out_of_out_data_is_refused(
    backends: EmbeddedBackends, ready: HandlerJob, tmp_path: Path
) -> None:
    write(tmp_path / "elsewhere" / "loot.txt", b"loot")
    os.symlink(tmp_path / "elsewhere", ready.layout.out_data / "dir")
    with pytest.raises(errors.PathEscapeError):
        await do_commit(ready, backends)
    await assert_nothing_written(backends, ready)


async def test_a_symlink_inside_out_data_is_fine(
    backends: EmbeddedBackends, ready: HandlerJob
) -> None:
    write(ready.layout.out_data / "real.txt", b"fine")
    os.symlink("real.txt", ready.layout.out_data / "alias.txt")
    result = await do_commit(ready, backends)
    assert len(result.outputs) == 2


async def test_committing_twice_publishes_each_child_once_and_upserts(
    backends: EmbeddedBackends, ready: HandlerJob
) -> None:
    write(ready.layout.out_data / "small.png", b"png")
    write(ready.layout.out_insights, '[{"key": "k", "value": "v"}]')
    event_file(ready, "e1.json", [("eventType", "image.small"), ("files", "small.png")])
    event_file(ready, "e2.json", [("eventType", "image.small")])

    first = await do_commit(ready, backends)
    docs_after_first = await backends.meta.list_documents(ready.event.correlation_id)
    keys_after_first = await backends.blob_keys()
    second = await do_commit(ready, backends)

    ids = [e.event_id for e in first.events]
    assert [e.event_id for e in second.events] == ids
    assert sorted(m.message_id for m in await backends.published("image.small")) == sorted(ids)
    assert await backends.meta.list_documents(ready.event.correlation_id) == docs_after_first
    assert len(docs_after_first) == 3  # one insight and two eventMeta documents
    assert await backends.blob_keys() == keys_after_first


class CrashOncePublishing(SqliteEventBus):
    """The real bus file, except that the first publish fails as if the process died there."""

    crashes = 1

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        if self.crashes:
            self.crashes -= 1
            raise errors.TransientError("simulated crash between upload and publish")
        await super().publish(topic, messages)


async def test_a_crash_between_upload_and_publish_is_repaired_by_rerunning(
    backends: EmbeddedBackends, ready: HandlerJob
) -> None:
    write(ready.layout.out_data / "small.png", b"png")
    event_file(ready, "e1.json", [("eventType", "image.small"), ("files", "small.png")])
    event_file(ready, "e2.json", [("eventType", "image.tagged")])
    async with CrashOncePublishing(backends.root / "bus.db") as crashing:
        with pytest.raises(errors.TransientError):
            await do_commit(ready, backends, bus=crashing)
    assert await backends.blob_keys() != []  # the upload happened
    assert await backends.published("image.small") == []  # the publish did not

    retried = await do_commit(ready, backends)

    expected = [
        child_event_id(ready.event.event_id, "resize", "e1.json"),
        child_event_id(ready.event.event_id, "resize", "e2.json"),
    ]
    assert [e.event_id for e in retried.events] == expected
    assert [m.message_id for m in await backends.published("image.small")] == expected[:1]
    assert [m.message_id for m in await backends.published("image.tagged")] == expected[1:]
    # A third run (say the dispatcher crashed before settling) still publishes nothing new.
    await do_commit(ready, backends)
    assert len(await backends.published("image.small")) == 1
    assert len(await backends.published("image.tagged")) == 1


async def test_nothing_to_commit_is_fine(backends: EmbeddedBackends, ready: HandlerJob) -> None:
    result = await do_commit(ready, backends)
    assert result.outputs == [] and result.events == []
    await assert_nothing_written(backends, ready)


def test_output_files_are_sorted_and_only_real_ones_are_plain(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for rel in ("b", "a-b", "a/b", "a/c/d", "z/.hidden"):
        write(out / rel)
    os.symlink("b", out / "alias")
    os.symlink("a", out / "dir-alias")
    os.symlink("missing", out / "dangling")
    found, plain = _output_files(out)
    assert found == ["a/b", "a/c/d", "a-b", "alias", "b", "z/.hidden"]
    assert plain == {"a/b", "a/c/d", "a-b", "b", "z/.hidden"}
    assert _output_files(tmp_path / "absent") == ([], frozenset())
