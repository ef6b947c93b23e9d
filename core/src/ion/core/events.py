"""The event on the bus and the metadata documents, with the 2018 field names.

Modules written for the 2018 Go system, and any tool reading its Cosmos collection, see the same
JSON: ``{"context": {...}, "type", "data"}`` on the bus and documents with a nested ``context``.
Golden JSON tests pin these shapes; change them only by adding optional fields.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, NewType

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ion.core import errors, identifiers

EventId = NewType("EventId", str)
CorrelationId = NewType("CorrelationId", str)
ModuleName = NewType("ModuleName", str)

ROOT_PUBLISHER = "frontapi"
"""`context.name` and `parentEventId` of a root event, as the 2018 front API wrote them."""

_ION_NAMESPACE = uuid.UUID("6f1c2b0e-8d7a-4c1e-9a55-1b0c3e4d5f60")


class DocumentType(StrEnum):
    """The `context.documentType` values of the 2018 document store."""

    EVENT_META = "eventMeta"
    INSIGHT = "insight"
    MODULE_LOGS = "modulelogs"


class KeyValuePair(BaseModel):
    """One `{"key", "value"}` pair; values are always strings, as in the 2018 contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    value: str

    @field_validator("value", mode="before")
    @classmethod
    def _reject_non_strings(cls, value: object) -> object:
        if not isinstance(value, str):
            raise ValueError("values must be strings (the 2018 contract has string values only)")
        return value


def pairs(mapping: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[KeyValuePair]:
    """Return key/value pairs from a mapping or an iterable of tuples, order kept."""
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    return [KeyValuePair(key=k, value=v) for k, v in items]


class Context(BaseModel):
    """Who published an event, and where it sits in its flow."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    name: str = ""
    event_id: str = Field(default="", alias="eventId")
    correlation_id: str = Field(default="", alias="correlationId")
    parent_event_id: str = Field(default="", alias="parentEventId")
    document_type: str = Field(default="", alias="documentType")

    def as_document(self, document_type: DocumentType) -> Context:
        """Return this context stamped with a document type."""
        return self.model_copy(update={"document_type": document_type.value})


class Event(BaseModel):
    """The JSON body of a bus message: `{"context", "type", "data"}`."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    context: Context
    type: str
    data: list[KeyValuePair] = Field(default_factory=list)

    @property
    def event_id(self) -> EventId:
        """The event's id (also the bus message id)."""
        return EventId(self.context.event_id)

    @property
    def correlation_id(self) -> CorrelationId:
        """The id shared by every event of one flow."""
        return CorrelationId(self.context.correlation_id)

    def to_json(self) -> bytes:
        """Serialise as the 2018 wire JSON (`data` omitted when empty, like Go's omitempty)."""
        body: dict[str, Any] = {
            "context": self.context.model_dump(by_alias=True),
            "type": self.type,
        }
        if self.data:
            body["data"] = [p.model_dump() for p in self.data]
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        """Parse a bus message body, checking every rule of `ion.core.identifiers`.

        Raises:
            errors.PoisonMessageError: for every body that cannot become a valid event, and
                nothing else: not UTF-8, not JSON, too large, too deep, a wrong value type, a
                missing, over-long or unsafe id... `reason` is a stable CamelCase word and
                `field` names what was wrong (`body` for the body as a whole), so the message
                can be dead-lettered at once with them.
        """
        try:
            return cls._from_wire(raw)
        except errors.PoisonMessageError:
            raise
        except errors.ValidationError as err:
            raise errors.PoisonMessageError(
                f"message is not a valid event: {err}",
                reason=err.rule or "InvalidEvent",
                field=err.field or "body",
            ) from err
        except Exception as err:  # a rule this parser misses must still dead-letter, not loop
            raise errors.PoisonMessageError(
                f"message is not a valid event: {type(err).__name__}: {err}",
                reason="InvalidEvent",
                field="body",
            ) from err

    @classmethod
    def _from_wire(cls, raw: bytes | str) -> Event:
        body = identifiers.parse_json(raw, field="body")
        if not isinstance(body, dict):
            raise errors.PoisonMessageError(
                f"message body is JSON but not an object ({type(body).__name__})",
                reason="NotAnEvent",
                field="body",
            )
        context = body.get("context")
        if not isinstance(context, dict):
            raise errors.PoisonMessageError(
                "message has no 'context' object", reason="MissingContext", field="context"
            )
        event_type = body.get("type")
        if event_type in (None, ""):
            raise errors.PoisonMessageError(
                "message has no type", reason="MissingType", field="type"
            )
        identifiers.check_event_type(event_type, field="type")
        for name, reason in (
            ("eventId", "MissingEventId"),
            ("correlationId", "MissingCorrelationId"),
        ):
            if context.get(name) in (None, ""):
                raise errors.PoisonMessageError(
                    f"message context has no {name}", reason=reason, field=f"context.{name}"
                )
        clean = {
            name: identifiers.check_id(
                context.get(name, ""),
                field=f"context.{name}",
                allow_empty=name not in ("eventId", "correlationId"),
            )
            for name in _CONTEXT_FIELDS
        }
        data = body.get("data")
        pairs_out: list[dict[str, str]] = []
        if data is not None:
            if not isinstance(data, list):
                raise errors.PoisonMessageError(
                    f"data must be an array of key/value pairs, not {type(data).__name__}",
                    reason=identifiers.WRONG_TYPE,
                    field="data",
                )
            if len(data) > identifiers.MAX_PAIRS:
                raise errors.PoisonMessageError(
                    f"data holds {len(data)} pairs; at most {identifiers.MAX_PAIRS} may be",
                    reason=identifiers.TOO_LARGE,
                    field="data",
                )
            for i, item in enumerate(data):
                pairs_out.append(_wire_pair(item, field=f"data.{i}"))
        try:
            return cls.model_validate({"context": clean, "type": event_type, "data": pairs_out})
        except ValidationError as err:  # unreachable while the checks above are complete
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise errors.PoisonMessageError(
                f"message is not a valid event: {field}: {first['msg']}",
                reason="InvalidEvent",
                field=field or "body",
            ) from err


_CONTEXT_FIELDS = ("name", "eventId", "correlationId", "parentEventId", "documentType")


def _wire_pair(item: object, *, field: str) -> dict[str, str]:
    if not isinstance(item, dict):
        raise errors.PoisonMessageError(
            f'{field} must be a {{"key", "value"}} object, not {type(item).__name__}',
            reason=identifiers.WRONG_TYPE,
            field=field,
        )
    unknown = sorted(set(item) - {"key", "value"})
    if unknown:
        raise errors.PoisonMessageError(
            f"{field} has unknown field(s) {', '.join(identifiers.shown(u, 20) for u in unknown)};"
            ' a pair is {"key", "value"}',
            reason="UnknownField",
            field=field,
        )
    for name in ("key", "value"):
        if name not in item:
            raise errors.PoisonMessageError(
                f"{field} has no {name!r}", reason="MissingField", field=f"{field}.{name}"
            )
    return {
        "key": identifiers.check_key(item["key"], field=f"{field}.key"),
        "value": identifiers.check_value(item["value"], field=f"{field}.value"),
    }


def new_root_event(
    event_type: str,
    *,
    data: Mapping[str, str] | None = None,
    correlation_id: str | None = None,
    publisher: str = ROOT_PUBLISHER,
    event_id: str | None = None,
) -> Event:
    """Return a root event (no parent) of a new flow, shaped like the 2018 front API's.

    `event_id` is a fresh UUID unless given (an entry point that stores the event's files
    before it publishes the event names them by its id).

    Raises:
        errors.ValidationError: the event type, correlation id or data break a rule of
            `ion.core.identifiers` (fields `event_type`, `correlation_id`, `data`), or the
            event would be larger than a bus message may be (`TooLarge`).
    """
    identifiers.check_root_request(event_type, data=data or {}, correlation_id=correlation_id)
    identifiers.check_id(publisher, field="publisher")
    event = Event(
        context=Context(
            name=publisher,
            event_id=event_id or str(uuid.uuid4()),
            correlation_id=correlation_id or str(uuid.uuid4()),
            parent_event_id=ROOT_PUBLISHER,
            document_type=DocumentType.EVENT_META.value,
        ),
        type=event_type,
        data=pairs(data or {}),
    )
    size = len(event.to_json())
    if size > identifiers.MAX_EVENT_BYTES:
        raise errors.ValidationError(
            f"the event would be {size} bytes on the bus; at most {identifiers.MAX_EVENT_BYTES}"
            " may be: send large content as a file",
            field="data",
            rule=identifiers.TOO_LARGE,
        )
    return event


def child_event_id(parent_event_id: str, module: str, event_file: str) -> EventId:
    """Return the id of the event a module raises from one event file, the same on every retry.

    Deterministic ids make a retried commit publish nothing twice: the bus drops the duplicate
    message id and the metadata write is an upsert.
    """
    return EventId(
        str(uuid.uuid5(_ION_NAMESPACE, f"{parent_event_id}\x1f{module}\x1f{event_file}"))
    )


def insight_id(event_id: str, module: str) -> str:
    """Return the id of the insight document a module's run on one event writes."""
    return str(uuid.uuid5(_ION_NAMESPACE, f"insight\x1f{event_id}\x1f{module}"))


class EventMeta(BaseModel):
    """The `eventMeta` document: an event's files and key/value data, keyed by event id."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    id: str
    context: Context
    type: str = ""
    files: list[str] = Field(default_factory=list)
    data: list[KeyValuePair] = Field(default_factory=list)
    files_prefix: str = Field(default="", alias="filesPrefix")
    """Blob key prefix under which `files` are stored (an Ion addition; 2018 readers ignore it)."""

    def to_document(self) -> dict[str, Any]:
        """Return the stored JSON shape (nested context, 2018 field names)."""
        return self.model_dump(by_alias=True, mode="json")


class Insight(BaseModel):
    """The `insight` document: key/value pairs a module reported for one event."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    id: str
    context: Context
    data: list[KeyValuePair] = Field(default_factory=list)

    def to_document(self) -> dict[str, Any]:
        """Return the stored JSON shape (nested context, 2018 field names)."""
        return self.model_dump(by_alias=True, mode="json")


class ModuleLogs(BaseModel):
    """The `modulelogs` document: where one attempt's logs are, and whether it succeeded."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    id: str
    context: Context
    desc: str
    logs: str
    succeeded: bool

    def to_document(self) -> dict[str, Any]:
        """Return the stored JSON shape (nested context, 2018 field names)."""
        return self.model_dump(by_alias=True, mode="json")


def module_logs_id(module: str, event_id: str, attempt: int) -> str:
    """Return the 2018 `modulelogs` id: `module:<m>-event:<e>-attempt:<n>`."""
    return f"module:{module}-event:{event_id}-attempt:{attempt}"
