"""A module's rules applied to one event: filter it (`when`), then pick its route (`routes`).

The dispatcher calls `decide` once per event before it starts a job. The facts a rule reads are
fetched only if it reads them: the event's data and file names from its eventMeta document, and
file sizes from the blob store (one look-up per file, only for rules that use `files.size` or
`file.size`). The chosen route is recorded on the attempt (`JobAttempt.route`), so a redelivered
message goes back to the same executor, and the flow tree and `-o json` show where a job ran.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ion.core import errors, rules
from ion.core.events import Event
from ion.core.modules import ModuleSpec
from ion.core.ports.blobs import BlobStore
from ion.core.ports.meta import MetadataStore
from ion.core.records import RouteChoice

__all__ = ["Decision", "RouteChoice", "decide", "event_facts", "needs_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What a module's rules say about one event."""

    run: bool
    """False: the event is filtered out by `when`."""
    reason: str = ""
    """For a filtered event: the rule it did not match, and any notes."""
    route: RouteChoice | None = None
    """For an event that runs, where (None when the module has no routes)."""


def needs_of(spec: ModuleSpec) -> frozenset[rules.Need]:
    """Everything the module's rules read beyond the event's type."""
    texts = [spec.when, *(r.when for r in spec.routes)]
    return frozenset().union(*(rules.compile_rule(t).needs for t in texts if t))


async def event_facts(
    event: Event,
    wanted: frozenset[rules.Need],
    *,
    meta: MetadataStore,
    blobs: BlobStore | None,
) -> rules.Facts:
    """Read what the rules need of an event: data and files (eventMeta), sizes (blob store).

    An event with no eventMeta document (raised straight onto the bus) has its own data and no
    files. A file missing from the blob store has an unknown size (a note says so when read).

    Raises:
        errors.TransientError: a store could not be read (the message is redelivered).
    """
    data = {p.key: p.value for p in event.data}
    files: list[rules.FileFact] = []
    if not wanted & {rules.Need.DATA, rules.Need.FILES}:
        return rules.Facts(event_type=event.type, data=data)
    try:
        doc = await meta.get_event_meta(event.correlation_id, event.event_id)
    except errors.NotFoundError:
        return rules.Facts(event_type=event.type, data=data)
    data = {p.key: p.value for p in doc.data} or data
    names = [f for f in doc.files if f.strip()]
    sizes: list[int | None] = [None] * len(names)
    if rules.Need.SIZES in wanted and names and blobs is not None:
        prefix = doc.files_prefix or (
            f"{doc.context.correlation_id}/{doc.context.parent_event_id}/{doc.context.name}"
        )
        sizes = list(await asyncio.gather(*(_size(blobs, f"{prefix}/{n}") for n in names)))
    files = [rules.FileFact(name=n, size=s) for n, s in zip(names, sizes, strict=True)]
    return rules.Facts(event_type=event.type, data=data, files=files)


async def _size(blobs: BlobStore, key: str) -> int | None:
    try:
        return (await blobs.stat(key)).size
    except errors.NotFoundError:
        return None


def decide(spec: ModuleSpec, facts: rules.Facts, *, default_executor: str) -> Decision:
    """Apply the module's `when`, then its routes in order (first match wins)."""
    if spec.when:
        verdict = rules.compile_rule(spec.when).evaluate(facts)
        if not verdict.matched:
            why = verdict.explain()
            return Decision(
                run=False,
                reason=f"filtered: when {spec.when} is false" + (f" ({why})" if why else ""),
            )
    if not spec.routes:
        return Decision(run=True)
    notes: list[str] = []
    for index, route in enumerate(spec.routes):
        if route.when:
            verdict = rules.compile_rule(route.when).evaluate(facts)
            notes.extend(verdict.notes)
            if not verdict.matched:
                continue
        return Decision(
            run=True,
            route=RouteChoice(
                index=index,
                executor=route.executor,
                when=route.when,
                resources=route.resources.over(spec.resources),
                notes="; ".join(dict.fromkeys(notes)),
            ),
        )
    return Decision(
        run=True,
        route=RouteChoice(
            executor=default_executor,
            resources=spec.resources,
            notes="; ".join(dict.fromkeys(notes)),
        ),
    )
