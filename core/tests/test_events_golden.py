"""Golden tests pinning the 2018 wire shapes: the bus event and the three metadata documents.

The files under `golden/` are the contract with modules, tools and stores written for the 2018
Go system. `2018_frontapi_response.json` and `2018_trace_flow.json` are copied verbatim from the
2018 documentation (QuickStartTranscode §3 and §4); the others are the shapes Ion writes.
Change a golden file only to add an optional field.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from ion.core import errors
from ion.core.events import (
    ROOT_PUBLISHER,
    Context,
    DocumentType,
    Event,
    EventMeta,
    Insight,
    ModuleLogs,
    child_event_id,
    insight_id,
    module_logs_id,
    new_root_event,
    pairs,
)

GOLDEN = Path(__file__).parent / "golden"
CORR = "0bff834f-4dfc-484a-80ed-4f2cfc149c23"
ROOT = "b9f9d945-3f0d-4650-9c11-58bd761e8a88"
CHILD = "fce68eb3-fca4-4a54-85b0-7eea74252e4f"


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def compact(name: str) -> bytes:
    """The golden file as the exact bytes Ion puts on the bus (key order kept)."""
    return json.dumps(golden(name), ensure_ascii=False, separators=(",", ":")).encode()


def child_context() -> Context:
    return Context(
        name="downloader",
        event_id=CHILD,
        correlation_id=CORR,
        parent_event_id=ROOT,
        document_type=DocumentType.EVENT_META.value,
    )


# --- the bus event -------------------------------------------------------------------------


def test_module_event_is_byte_for_byte_the_golden_bus_message() -> None:
    event = Event(context=child_context(), type="file_downloaded")
    assert event.to_json() == compact("bus_event.json")


def test_bus_event_keys_are_in_the_2018_order() -> None:
    body = json.loads(Event(context=child_context(), type="file_downloaded").to_json())
    assert list(body) == ["context", "type"]
    assert list(body["context"]) == [
        "name",
        "eventId",
        "correlationId",
        "parentEventId",
        "documentType",
    ]


def test_empty_data_is_omitted_like_go_omitempty() -> None:
    body = json.loads(Event(context=child_context(), type="t", data=[]).to_json())
    assert "data" not in body


def test_event_with_data_matches_golden_and_keeps_unicode() -> None:
    event = Event(
        context=Context(
            name=ROOT_PUBLISHER,
            event_id=ROOT,
            correlation_id=CORR,
            parent_event_id=ROOT_PUBLISHER,
        ),
        type="frontapi.new_link",
        data=pairs({"url": "http://example.org/movie.mp4", "note": "ünïcødé stays as is"}),
    )
    assert event.to_json() == compact("bus_event_with_data.json")
    assert "ünïcødé".encode() in event.to_json()


@pytest.mark.parametrize("name", ["bus_event.json", "bus_event_with_data.json"])
def test_golden_bus_messages_round_trip(name: str) -> None:
    raw = (GOLDEN / name).read_bytes()
    event = Event.from_json(raw)
    assert event.to_json() == compact(name)
    assert Event.from_json(event.to_json()) == event


def test_2018_frontapi_message_parses_verbatim() -> None:
    raw = (GOLDEN / "2018_frontapi_response.json").read_bytes()
    event = Event.from_json(raw)
    assert event.type == "frontapi.new_link"
    assert event.event_id == ROOT
    assert event.correlation_id == CORR
    assert event.context.name == ROOT_PUBLISHER
    assert event.context.parent_event_id == ROOT_PUBLISHER
    assert event.context.document_type == "eventMeta"
    assert event.data == []
    # Written back, it is the same message.
    assert event.to_json() == compact("2018_frontapi_response.json")


def test_unknown_fields_are_ignored_so_newer_publishers_do_not_poison_older_readers() -> None:
    body = golden("bus_event.json")
    body["context"]["traceParent"] = "00-abc"
    body["priority"] = 3
    event = Event.from_json(json.dumps(body))
    assert event.to_json() == compact("bus_event.json")


def test_new_root_event_has_the_2018_front_api_shape() -> None:
    event = new_root_event("media.submitted", data={"count": "3"})
    body = json.loads(event.to_json())
    assert body["context"]["name"] == "frontapi"
    assert body["context"]["parentEventId"] == "frontapi"
    assert body["context"]["documentType"] == "eventMeta"
    assert body["type"] == "media.submitted"
    assert body["data"] == [{"key": "count", "value": "3"}]
    uuid.UUID(body["context"]["eventId"])
    uuid.UUID(body["context"]["correlationId"])
    other = new_root_event("media.submitted")
    assert other.event_id != event.event_id
    assert other.correlation_id != event.correlation_id
    assert new_root_event("x", correlation_id="given").correlation_id == "given"


# --- the documents ---------------------------------------------------------------------------


def test_event_meta_document_matches_golden() -> None:
    prefix = f"{CORR}/{ROOT}/downloader"
    doc = EventMeta(
        id=CHILD,
        context=child_context(),
        type="file_downloaded",
        files=["file.raw", "frames/0001.png"],
        data=pairs(
            [
                ("file.raw", "file:///blobs/c/e/downloader/file.raw"),
                ("frames/0001.png", "file:///blobs/c/e/downloader/frames/0001.png"),
                ("source", "http://example.org/movie.mp4"),
            ]
        ),
        files_prefix=prefix,
    )
    assert doc.to_document() == golden("event_meta.json")
    assert EventMeta.model_validate(golden("event_meta.json")) == doc


def test_insight_document_matches_golden() -> None:
    context = Context(
        name="downloader", event_id=ROOT, correlation_id=CORR, parent_event_id="frontapi"
    ).as_document(DocumentType.INSIGHT)
    doc = Insight(
        id="8d23c311-863f-44e2-8e95-aafe413fe4bb",
        context=context,
        data=pairs({"downloadTimeSec": "3.247324"}),
    )
    assert doc.to_document() == golden("insight.json")
    assert Insight.model_validate(golden("insight.json")) == doc


def test_modulelogs_document_matches_golden() -> None:
    doc_id = module_logs_id("downloader", ROOT, 1)
    context = Context(
        name="downloader", event_id=ROOT, correlation_id=CORR, parent_event_id="frontapi"
    ).as_document(DocumentType.MODULE_LOGS)
    doc = ModuleLogs(
        id=doc_id,
        context=context,
        desc=doc_id,
        logs=f"file:///blobs/logs/{CORR}/{ROOT}/downloader-attempt-1.log",
        succeeded=True,
    )
    assert doc.to_document() == golden("modulelogs.json")
    assert ModuleLogs.model_validate(golden("modulelogs.json")) == doc


def test_documents_nest_the_context_not_flatten_it() -> None:
    for name in ("event_meta.json", "insight.json", "modulelogs.json"):
        body = golden(name)
        assert isinstance(body["context"], dict), name
        assert "eventId" not in body, name
        assert "correlationId" not in body, name


_MODELS: dict[str, type[EventMeta] | type[Insight] | type[ModuleLogs]] = {
    "eventMeta": EventMeta,
    "insight": Insight,
    "modulelogs": ModuleLogs,
}


def test_2018_trace_documents_parse_and_keep_every_2018_field() -> None:
    docs = golden("2018_trace_flow.json")
    assert {d["context"]["documentType"] for d in docs} == set(_MODELS)
    for original in docs:
        model = _MODELS[original["context"]["documentType"]]
        parsed = model.model_validate(original)
        written = parsed.to_document()
        for key, value in original.items():
            if key == "_id":  # Mongo's own key, not part of the document Ion writes
                continue
            assert written[key] == value, (original["id"], key)


def test_2018_trace_event_meta_names_its_files_and_urls() -> None:
    docs = golden("2018_trace_flow.json")
    downloaded = EventMeta.model_validate(docs[2])
    assert downloaded.files == ["file.raw"]
    assert downloaded.data[0].key == "file.raw"
    assert downloaded.context.parent_event_id == ROOT
    assert downloaded.files_prefix == ""  # 2018 documents have none; prepare derives it


def test_module_logs_id_is_the_2018_format() -> None:
    assert module_logs_id("downloader", ROOT, 0) == f"module:downloader-event:{ROOT}-attempt:0"


# --- poison messages -------------------------------------------------------------------------

_CTX = {"name": "m", "eventId": "e1", "correlationId": "c1", "parentEventId": "p"}


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        pytest.param(b"not json at all", "NotJson", "body", id="not-json"),
        pytest.param(b"\xff\xfe\x00", "InvalidText", "body", id="not-utf8"),
        pytest.param(b"", "NotJson", "body", id="empty-body"),
        pytest.param(b'["a", "list"]', "NotAnEvent", "body", id="not-an-object"),
        pytest.param(b'"a string"', "NotAnEvent", "body", id="a-json-string"),
        pytest.param(b'{"type": "t"}', "MissingContext", "context", id="no-context"),
        pytest.param(b'{"context": "x", "type": "t"}', "MissingContext", "context", id="ctx-str"),
        pytest.param(
            json.dumps({"context": {**_CTX, "eventId": ""}, "type": "t"}).encode(),
            "MissingEventId",
            "context.eventId",
            id="empty-event-id",
        ),
        pytest.param(
            json.dumps({"context": {"correlationId": "c1"}, "type": "t"}).encode(),
            "MissingEventId",
            "context.eventId",
            id="no-event-id",
        ),
        pytest.param(
            json.dumps({"context": {"eventId": "e1"}, "type": "t"}).encode(),
            "MissingCorrelationId",
            "context.correlationId",
            id="no-correlation-id",
        ),
        pytest.param(json.dumps({"context": _CTX}).encode(), "MissingType", "type", id="no-type"),
        pytest.param(
            json.dumps({"context": _CTX, "type": ""}).encode(),
            "MissingType",
            "type",
            id="empty-type",
        ),
        pytest.param(
            json.dumps({"context": _CTX, "type": 7}).encode(),
            "WrongType",
            "type",
            id="type-not-string",
        ),
        pytest.param(
            json.dumps({"context": _CTX, "type": "t", "data": [{"key": "k", "value": 1}]}).encode(),
            "WrongType",
            "data.0.value",
            id="non-string-value",
        ),
        pytest.param(
            json.dumps({"context": _CTX, "type": "t", "data": {"k": "v"}}).encode(),
            "WrongType",
            "data",
            id="data-not-a-list",
        ),
    ],
)
def test_poison_messages_are_refused_with_their_reason(raw: bytes, reason: str, field: str) -> None:
    with pytest.raises(errors.PoisonMessageError) as caught:
        Event.from_json(raw)
    assert caught.value.reason == reason
    assert caught.value.rule == reason
    assert caught.value.field == field
    assert str(caught.value)  # a human-readable description for the dead-letter queue
    assert isinstance(caught.value, errors.ValidationError)


def test_non_string_value_message_says_why() -> None:
    raw = json.dumps({"context": _CTX, "type": "t", "data": [{"key": "k", "value": 1}]})
    with pytest.raises(errors.PoisonMessageError, match="values must be strings"):
        Event.from_json(raw)


# --- deterministic ids -----------------------------------------------------------------------


def test_child_event_id_is_deterministic() -> None:
    first = child_event_id(ROOT, "downloader", "event-1.json")
    assert first == child_event_id(ROOT, "downloader", "event-1.json")
    assert str(uuid.UUID(first)) == first


@pytest.mark.parametrize(
    "other",
    [
        ("another-parent", "downloader", "event-1.json"),
        (ROOT, "transcoder", "event-1.json"),
        (ROOT, "downloader", "event-2.json"),
    ],
)
def test_child_event_id_differs_per_parent_module_and_file(other: tuple[str, str, str]) -> None:
    assert child_event_id(*other) != child_event_id(ROOT, "downloader", "event-1.json")


def test_child_event_id_does_not_collide_when_parts_shift() -> None:
    assert child_event_id("ab", "c", "d") != child_event_id("a", "bc", "d")
    assert child_event_id("a", "b-c", "d") != child_event_id("a-b", "c", "d")


def test_child_event_ids_are_unique_over_many_files() -> None:
    ids = {child_event_id(ROOT, "m", f"event-{i}.json") for i in range(2000)}
    assert len(ids) == 2000


def test_insight_id_is_deterministic_per_event_and_module() -> None:
    assert insight_id(ROOT, "m") == insight_id(ROOT, "m")
    assert insight_id(ROOT, "m") != insight_id(ROOT, "n")
    assert insight_id(ROOT, "m") != insight_id(CHILD, "m")
    assert insight_id(ROOT, "m") != child_event_id(ROOT, "m", "insight")
