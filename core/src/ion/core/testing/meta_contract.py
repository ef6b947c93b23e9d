"""The MetadataStore contract: every backend's test module subclasses `MetadataStoreContract`.

A subclass provides the `meta` fixture (a fresh, empty store).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from ion.core import errors
from ion.core.events import Context, DocumentType, EventMeta, Insight, ModuleLogs, pairs
from ion.core.flowindex import FlowQuery, FlowStatus
from ion.core.modules import ModuleSpec
from ion.core.ports.meta import MetadataStore
from ion.core.records import AttemptState, JobAttempt, ModuleRecord, RunStatus


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

    async def test_event_metas_are_found_by_a_prefix_of_their_id_in_any_flow(
        self, meta: MetadataStore
    ) -> None:
        stem = uuid.uuid4().hex[:10]
        ids = [f"{stem}a1", f"{stem}a2", f"{stem}b1"]
        for ev in ids:
            corr = str(uuid.uuid4())  # each in a flow of its own
            await meta.upsert_event_meta(
                EventMeta(id=ev, context=_ctx(corr, ev, DocumentType.EVENT_META), type="t")
            )
        await meta.upsert_insight(  # not an eventMeta: never found
            Insight(
                id=f"{stem}a3",
                context=_ctx(str(uuid.uuid4()), f"{stem}a3", DocumentType.INSIGHT),
                data=pairs({"k": "v"}),
            )
        )
        assert [d.id for d in await meta.find_event_metas(stem, limit=10)] == ids
        assert [d.id for d in await meta.find_event_metas(f"{stem}a", limit=10)] == ids[:2]
        assert [d.id for d in await meta.find_event_metas(f"{stem}a", limit=1)] == ids[:1]
        assert [d.id for d in await meta.find_event_metas(ids[2], limit=10)] == ids[2:]
        assert await meta.find_event_metas(f"{stem}c", limit=10) == []

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

    # -- flows: summaries maintained with every write, listed and filtered -------------------

    async def _live_module(self, meta: MetadataStore, name: str, subscribes_to: str) -> None:
        spec = ModuleSpec(name=name, subscribes_to=subscribes_to, command=["true"])
        await meta.create_module(
            ModuleRecord(
                id=f"{name}-{uuid.uuid4().hex[:6]}", spec=spec, created_at=datetime.now(UTC)
            )
        )

    async def _root(self, meta: MetadataStore, corr: str, event_type: str) -> str:
        event = str(uuid.uuid4())
        ctx = Context(
            name="frontapi", event_id=event, correlation_id=corr, parent_event_id="frontapi"
        )
        await meta.upsert_event_meta(
            EventMeta(id=event, context=ctx.as_document(DocumentType.EVENT_META), type=event_type)
        )
        return event

    async def test_a_flow_s_status_follows_its_writes(self, meta: MetadataStore) -> None:
        kind = f"t{uuid.uuid4().hex[:8]}"
        await self._live_module(meta, "resize", f"{kind}.new")
        await self._live_module(meta, "label", f"{kind}.small")
        corr = str(uuid.uuid4())
        root = await self._root(meta, corr, f"{kind}.new")
        summary = await meta.get_flow_summary(corr)
        # the subscriber has not started yet: the flow is running, its run pending
        assert (summary.status, summary.runs) == (FlowStatus.RUNNING, {RunStatus.PENDING: 1})
        assert (summary.root_event_id, summary.root_event_type) == (root, f"{kind}.new")
        assert summary.modules == ["resize"] and not summary.cancelled
        run = JobAttempt(
            id="resize-a1",
            module="resize",
            event_id=root,
            correlation_id=corr,
            event_type=f"{kind}.new",
            parent_event_id="frontapi",
            state=AttemptState.RUNNING,
        )
        await meta.upsert_attempt(run)
        assert (await meta.get_flow_summary(corr)).runs == {RunStatus.RUNNING: 1}
        # its child event waits for `label`: still running although every attempt finished
        child = "child-1"
        ctx = Context(name="resize", event_id=child, correlation_id=corr, parent_event_id=root)
        await meta.upsert_event_meta(
            EventMeta(
                id=child, context=ctx.as_document(DocumentType.EVENT_META), type=f"{kind}.small"
            )
        )
        await meta.upsert_attempt(run.evolve(state=AttemptState.SUCCEEDED))
        summary = await meta.get_flow_summary(corr)
        assert summary.status == FlowStatus.RUNNING
        assert summary.runs == {RunStatus.SUCCEEDED: 1, RunStatus.PENDING: 1}
        assert summary.modules == ["label", "resize"]
        first = JobAttempt(
            id="label-a1",
            module="label",
            event_id=child,
            correlation_id=corr,
            event_type=f"{kind}.small",
            parent_event_id=root,
            state=AttemptState.FAILED,
        )
        await meta.upsert_attempt(first)
        assert (await meta.get_flow_summary(corr)).runs[RunStatus.RETRYING] == 1
        # an older attempt written late does not move the run back
        await meta.upsert_attempt(
            first.model_copy(update={"id": "label-a2", "attempt": 2}).evolve(
                state=AttemptState.DEAD_LETTERED
            )
        )
        await meta.upsert_attempt(first)
        summary = await meta.get_flow_summary(corr)
        assert summary.status == FlowStatus.FAILED
        assert summary.runs == {RunStatus.SUCCEEDED: 1, RunStatus.DEAD_LETTERED: 1}
        assert summary.updated_at >= summary.started_at

    async def test_a_root_nobody_subscribes_to_is_no_subscriber(self, meta: MetadataStore) -> None:
        corr = str(uuid.uuid4())
        await self._root(meta, corr, f"nobody{uuid.uuid4().hex[:8]}.listens")
        summary = await meta.get_flow_summary(corr)
        assert summary.status == FlowStatus.NO_SUBSCRIBER and summary.runs == {}
        with pytest.raises(errors.NotFoundError):
            await meta.get_flow_summary(str(uuid.uuid4()))

    async def test_a_cancelled_flow_says_so_to_every_reader(self, meta: MetadataStore) -> None:
        kind = f"t{uuid.uuid4().hex[:8]}"
        await self._live_module(meta, "slow", f"{kind}.new")
        corr = str(uuid.uuid4())
        await self._root(meta, corr, f"{kind}.new")
        cancelled = await meta.cancel_flow(corr)
        assert cancelled.status == FlowStatus.CANCELLED and cancelled.cancelled
        assert cancelled.runs == {RunStatus.CANCELLED: 1}
        again = await meta.cancel_flow(corr)  # idempotent: the first time is kept
        assert again.cancelled_at == cancelled.cancelled_at
        assert (await meta.get_flow_summary(corr)).cancelled
        with pytest.raises(errors.NotFoundError):
            await meta.cancel_flow(str(uuid.uuid4()))

    async def test_flows_list_newest_first_filtered_and_paged(self, meta: MetadataStore) -> None:
        kind = f"t{uuid.uuid4().hex[:8]}"
        await self._live_module(meta, "resize", f"{kind}.new")
        before = datetime.now(UTC)
        flows = []
        for i in range(5):
            corr = f"{kind}-{i}-{uuid.uuid4().hex[:6]}"
            event_type = f"{kind}.new" if i % 2 == 0 else f"{kind}.other"
            await self._root(meta, corr, event_type)
            flows.append(corr)
        newest_first = list(reversed(flows))
        everything = await meta.list_flows(FlowQuery(id_prefix=kind))
        assert [f.correlation_id for f in everything.items] == newest_first
        assert everything.next_cursor == ""
        # pages of two, each continuing where the last stopped
        seen: list[str] = []
        cursor = ""
        for _ in range(5):
            page = await meta.list_flows(FlowQuery(id_prefix=kind, limit=2, cursor=cursor))
            seen += [f.correlation_id for f in page.items]
            cursor = page.next_cursor
            if not cursor:
                break
        assert seen == newest_first
        by_status = await meta.list_flows(
            FlowQuery(id_prefix=kind, status=[FlowStatus.NO_SUBSCRIBER])
        )
        assert [f.correlation_id for f in by_status.items] == [flows[3], flows[1]]
        by_module = await meta.list_flows(FlowQuery(id_prefix=kind, module="resize"))
        assert [f.correlation_id for f in by_module.items] == [flows[4], flows[2], flows[0]]
        by_type = await meta.list_flows(
            FlowQuery(id_prefix=kind, root_event_type=f"{kind}.other", status=[FlowStatus.RUNNING])
        )
        assert by_type.items == []
        assert (await meta.list_flows(FlowQuery(id_prefix=kind, started_before=before))).items == []
        after = await meta.list_flows(FlowQuery(id_prefix=kind, started_after=before, limit=1))
        assert [f.correlation_id for f in after.items] == [flows[4]] and after.next_cursor
        with pytest.raises(errors.ValidationError):
            await meta.list_flows(FlowQuery(cursor="not-a-cursor"))
