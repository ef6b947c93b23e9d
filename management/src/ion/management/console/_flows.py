"""The flows page: not built yet, as `MetadataStore.list_flows` has not landed in ion.core."""

from __future__ import annotations

from typing import Any

from multidict import MultiMapping

from ion.core.ports import MetadataStore
from ion.management.registry import ModuleRegistry


async def flows_page(
    meta: MetadataStore, registry: ModuleRegistry, params: MultiMapping[str]
) -> dict[str, Any]:
    """Return the values the flows template renders: the page is marked as not built."""
    return {"built": False}
