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

from ion.core import errors

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
        """Parse a bus message body.

        Raises:
            errors.PoisonMessageError: not JSON, no context, no event id, or no type; the reason
                says which, so the message can be dead-lettered with it.
        """
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise errors.PoisonMessageError(
                f"message body is not JSON: {err}", reason="NotJson"
            ) from err
        if not isinstance(body, dict):
            raise errors.PoisonMessageError(
                "message body is JSON but not an object", reason="NotAnEvent"
            )
        if not isinstance(body.get("context"), dict):
            raise errors.PoisonMessageError(
                "message has no 'context' object", reason="MissingContext", field="context"
            )
        if body.get("type") in (None, ""):
            raise errors.PoisonMessageError(
                "message has no type", reason="MissingType", field="type"
            )
        try:
            event = cls.model_validate(body)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise errors.PoisonMessageError(
                f"message is not a valid event: {field}: {first['msg'].removeprefix('Value error, ')}",
                reason="InvalidEvent",
                field=field,
            ) from err
        if not event.context.event_id:
            raise errors.PoisonMessageError(
                "message context has no eventId", reason="MissingEventId", field="context.eventId"
            )
        if not event.context.correlation_id:
            raise errors.PoisonMessageError(
                "message context has no correlationId",
                reason="MissingCorrelationId",
                field="context.correlationId",
            )
        return event


def new_root_event(
    event_type: str,
    *,
    data: Mapping[str, str] | None = None,
    correlation_id: str | None = None,
    publisher: str = ROOT_PUBLISHER,
) -> Event:
    """Return a root event (no parent) of a new flow, shaped like the 2018 front API's."""
    return Event(
        context=Context(
            name=publisher,
            event_id=str(uuid.uuid4()),
            correlation_id=correlation_id or str(uuid.uuid4()),
            parent_event_id=ROOT_PUBLISHER,
            document_type=DocumentType.EVENT_META.value,
        ),
        type=event_type,
        data=pairs(data or {}),
    )


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
