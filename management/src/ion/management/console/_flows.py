"""The flows page: recent flows from `MetadataStore.list_flows`, filtered and paged.

Query parameters: `status` (repeatable, any of `FlowStatus`), `module` (a module name),
`from` and `to` (start time, `YYYY-MM-DDTHH:MM` in UTC, as a `datetime-local` field sends
it), `limit` (flows per page) and `cursor` (the next page's, from the previous page). A value
that breaks a rule is a `ValidationError` naming the parameter (an error page, 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from multidict import MultiMapping

from ion.core import FlowQuery, FlowStatus, errors
from ion.core.ports import MetadataStore
from ion.management.registry import ModuleRegistry

PAGE_SIZES = (20, 50, 100)


def _time(value: str, field: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as err:
        raise errors.ValidationError(
            f"{field}: {value[:40]!r} is not a time (YYYY-MM-DDTHH:MM, UTC)",
            field=field,
            rule="InvalidTime",
        ) from err
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _query(params: MultiMapping[str]) -> FlowQuery:
    statuses: list[FlowStatus] = []
    for value in params.getall("status", []):
        try:
            statuses.append(FlowStatus(value))
        except ValueError as err:
            raise errors.ValidationError(
                f"status: {value[:40]!r} is not one of {', '.join(FlowStatus)}",
                field="status",
                rule="InvalidStatus",
            ) from err
    limit_text = params.get("limit", "") or str(PAGE_SIZES[0])
    if not limit_text.isdigit() or int(limit_text) not in PAGE_SIZES:
        raise errors.ValidationError(
            f"limit: {limit_text[:20]!r} is not one of {', '.join(map(str, PAGE_SIZES))}",
            field="limit",
            rule="InvalidLimit",
        )
    return FlowQuery(
        status=statuses,
        module=params.get("module", "").strip(),
        started_after=_time(params.get("from", ""), "from"),
        started_before=_time(params.get("to", ""), "to"),
        limit=int(limit_text),
        cursor=params.get("cursor", "").strip(),
    )


def _link(query: FlowQuery, params: Mapping[str, str], cursor: str) -> str:
    pairs: list[tuple[str, str]] = [("status", s.value) for s in query.status]
    for key in ("module", "from", "to"):
        if params.get(key):
            pairs.append((key, params[key]))
    pairs.append(("limit", str(query.limit)))
    if cursor:
        pairs.append(("cursor", cursor))
    return "/ui/flows?" + urlencode(pairs)


async def flows_page(
    meta: MetadataStore, registry: ModuleRegistry, params: MultiMapping[str]
) -> dict[str, Any]:
    """Return the values the flows template renders for these query parameters.

    Raises:
        errors.ValidationError: a parameter breaks its rule, or the cursor is not one a
            listing returned.
    """
    query = _query(params)
    page = await meta.list_flows(query)
    modules = sorted({m.spec.name for m in await registry.list_modules(include_deleted=True)})
    plain = {key: params.get(key, "") for key in ("module", "from", "to")}
    return {
        "built": True,
        "page": page,
        "query": query,
        "statuses": list(FlowStatus),
        "modules": modules,
        "params": plain,
        "page_sizes": PAGE_SIZES,
        "next_link": _link(query, plain, page.next_cursor) if page.next_cursor else "",
        "first_link": _link(query, plain, "") if query.cursor else "",
        "now": datetime.now(UTC),
    }
