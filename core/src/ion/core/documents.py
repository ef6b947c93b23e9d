"""The 2018 documents of a flow as one type, and reading them back from their stored JSON.

`MetadataStore.list_documents` returns `FlowDocument`s; every backend turns a stored body into
its model with `parse_document`, and `to_document()` gives the stored shape back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ion.core import errors
from ion.core.events import DocumentType, EventMeta, Insight, ModuleLogs

__all__ = ["FlowDocument", "parse_document"]

FlowDocument = EventMeta | Insight | ModuleLogs
"""A stored document of a flow: an event's eventMeta, a run's insight or an attempt's logs."""

_MODELS: dict[str, type[EventMeta] | type[Insight] | type[ModuleLogs]] = {
    DocumentType.EVENT_META.value: EventMeta,
    DocumentType.INSIGHT.value: Insight,
    DocumentType.MODULE_LOGS.value: ModuleLogs,
}


def parse_document(body: Mapping[str, Any]) -> FlowDocument:
    """Return a stored document (the 2018 JSON shape) as its model, by `context.documentType`.

    Raises:
        errors.ValidationError: the document has no known type or does not fit it; the message
            names the document.
    """
    context = body.get("context")
    kind = context.get("documentType") if isinstance(context, Mapping) else None
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise errors.ValidationError(
            f"stored document {body.get('id')!r} has documentType {kind!r};"
            f" expected one of {', '.join(_MODELS)}",
            field="context.documentType",
        )
    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise errors.ValidationError(
            f"stored {kind} document {body.get('id')!r} is not valid: {field}: {first['msg']}",
            field=field,
        ) from err
