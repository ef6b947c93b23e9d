"""The MetadataStore contract: every backend's test module subclasses `MetadataStoreContract`.

A subclass provides the `meta` fixture (a fresh, empty store).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from ion.core import errors
from ion.core.events import Context, DocumentType, EventMeta, Insight, ModuleLogs, pairs
from ion.core.modules import ModuleSpec
from ion.core.ports.meta import MetadataStore
from ion.core.records import AttemptState, JobAttempt, ModuleRecord


def _ctx(corr: str, event: str, doc: DocumentType, name: str = "mod") -> Context:
    return Context(
        name=name, event_id=event, correlation_id=corr, parent_event_id="frontapi"
    ).as_document(doc)


def _spec(name: str = "resize") -> ModuleSpec:
    return ModuleSpec(
        name=name, subscribes_to="image.new", publishes=["image.small"], command=["true"]
    )


class MetadataStoreContract:
    """What every MetadataStore promises."""

    async def test_event_meta_upsert_and_get(self, meta: MetadataStore) -> None:
        corr, ev = str(uuid.uuid4()), str(uuid.uuid4())
        doc = EventMeta(
            id=ev,
            context=_ctx(corr, ev, DocumentType.EVENT_META),
            type="image.new",
            files=["a.png", "sub/b.png"],
            data=pairs({"k": "v"}),
        )
        await meta.upsert_event_meta(doc)
        assert await meta.get_event_meta(corr, ev) == doc
        changed = doc.model_copy(update={"data": pairs({"k": "w"})})
        await meta.upsert_event_meta(changed)
        assert await meta.get_event_meta(corr, ev) == changed
        assert len(await meta.list_documents(corr)) == 1

    async def test_missing_event_meta_is_not_found(self, meta: MetadataStore) -> None:
        with pytest.raises(errors.NotFoundError):
            await meta.get_event_meta(str(uuid.uuid4()), str(uuid.uuid4()))

    async def test_list_documents_returns_the_flow_in_2018_shape(self, meta: MetadataStore) -> None:
        corr, other = str(uuid.uuid4()), str(uuid.uuid4())
        ev = str(uuid.uuid4())
        event_meta = EventMeta(
            id=ev,
            context=_ctx(corr, ev, DocumentType.EVENT_META),
            type="image.new",
            files=["a.png"],
            data=pairs({"k": "v"}),
            files_prefix=f"{corr}/{ev}/root/",
        )
        insight = Insight(
            id="i1", context=_ctx(corr, ev, DocumentType.INSIGHT), data=pairs({"a": "1"})
        )
        logs = ModuleLogs(
            id="module:mod-event:e-attempt:1",
            context=_ctx(corr, ev, DocumentType.MODULE_LOGS),
            desc="module:mod-event:e-attempt:1",
            logs="logs/x.log",
            succeeded=True,
        )
        await meta.upsert_event_meta(event_meta)
        await meta.upsert_insight(insight)
        await meta.upsert_module_logs(logs)
        await meta.upsert_event_meta(
            EventMeta(id="x", context=_ctx(other, "x", DocumentType.EVENT_META))
        )
        docs = await meta.list_documents(corr)
        # each document comes back as its own model, equal to what was written, oldest first
        assert [type(d) for d in docs] == [EventMeta, Insight, ModuleLogs]
        assert docs == [event_meta, insight, logs]
        # ... and its stored shape is the 2018 one
        assert docs[0].to_document() == {
            "id": ev,
            "context": {
                "name": "mod",
                "eventId": ev,
                "correlationId": corr,
                "parentEventId": "frontapi",
                "documentType": "eventMeta",
            },
            "type": "image.new",
            "files": ["a.png"],
            "data": [{"key": "k", "value": "v"}],
            "filesPrefix": f"{corr}/{ev}/root/",
        }
        assert docs[1].to_document()["data"] == [{"key": "a", "value": "1"}]
        assert docs[2].to_document()["succeeded"] is True

    async def test_module_create_get_list_replace(self, meta: MetadataStore) -> None:
        rec = ModuleRecord(
            id=f"resize-{uuid.uuid4().hex[:6]}", spec=_spec(), created_at=datetime.now(UTC)
        )
        stored = await meta.create_module(rec)
        assert stored.etag
        with pytest.raises(errors.ConflictError):
            await meta.create_module(rec)
        got = await meta.get_module(rec.id)
        assert got.spec == rec.spec
        assert rec.id in [m.id for m in await meta.list_modules()]
        deleted = await meta.replace_module(got.model_copy(update={"deleted": True}))
        assert deleted.etag != got.etag
        assert rec.id not in [m.id for m in await meta.list_modules()]
        assert rec.id in [m.id for m in await meta.list_modules(include_deleted=True)]
        with pytest.raises(errors.ConflictError):
            await meta.replace_module(got)  # stale etag

    async def test_missing_module_is_not_found(self, meta: MetadataStore) -> None:
        with pytest.raises(errors.NotFoundError):
            await meta.get_module("nope-123")

    async def test_attempts_upsert_and_query(self, meta: MetadataStore) -> None:
        corr = str(uuid.uuid4())
        a1 = JobAttempt(id="m-e1-a1", module="m", event_id="e1", correlation_id=corr)
        a2 = JobAttempt(id="m2-e1-a1", module="m2", event_id="e1", correlation_id=corr)
        await meta.upsert_attempt(a1)
        await meta.upsert_attempt(a2)
        done = a1.evolve(state=AttemptState.SUCCEEDED, exit_code=0, finished_at=datetime.now(UTC))
        await meta.upsert_attempt(done)
        assert await meta.get_attempt(corr, "m-e1-a1") == done
        assert [a.id for a in await meta.list_attempts(correlation_id=corr)] == [
            "m-e1-a1",
            "m2-e1-a1",
        ]
        assert [a.id for a in await meta.list_attempts(correlation_id=corr, module="m2")] == [
            "m2-e1-a1"
        ]
        ok = await meta.list_attempts(
            correlation_id=corr, states=frozenset({AttemptState.SUCCEEDED})
        )
        assert [a.id for a in ok] == ["m-e1-a1"]
        with pytest.raises(errors.NotFoundError):
            await meta.get_attempt(corr, "nope")
