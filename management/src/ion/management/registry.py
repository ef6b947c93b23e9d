"""The module registry: modules kept in the MetadataStore, their dispatchers run by a Deployer.

Ids are the module's name plus a random five-character suffix, checked against the store
before use and again by `create_module`'s uniqueness, so they never collide (the 2018 server
derived its suffix from the clock and collided within about two minutes). A name is held by at
most one live module, since the name decides the module's subscription. Deleting a module
stops its dispatchers and removes its subscription but keeps its record (flagged deleted) and
its attempts, so its history stays queryable.

`apply` creates a module or updates the live module of that name in place: same id, same
subscription, so no queued event is lost; only the spec and the dispatchers change. `delete`
drains: it refuses while events are queued (unless forced), stops receiving, waits for the
running jobs, and retires the subscription through `ion.management.retire`, which keeps every
message left as a dead letter and records the module's open runs CANCELLED.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from ion.core import AttemptState, JobAttempt, ModuleRecord, ModuleSpec, errors, naming
from ion.core.ports import EventBus, MetadataStore
from ion.dispatcher.pool import Draining
from ion.management import retire
from ion.management.deployers import Deployer, Drainer, Runtime, SpecChecker

log = logging.getLogger(__name__)

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
_SUFFIX_LENGTH = 5
CACHE_SECONDS = 2.0
"""How stale the module list may be for changes made by another process on the same store."""
DRAIN_SECONDS = 60.0
"""How long a delete waits for a module's running jobs by default."""
MAX_DRAIN_SECONDS = 3600.0

ApplyAction = Literal["created", "configured", "unchanged"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """What `ModuleRegistry.apply` did (or, in a dry run, would do)."""

    record: ModuleRecord | None
    """The module as stored (None for a dry-run create)."""
    action: ApplyAction
    changed: tuple[str, ...] = ()
    """Spec fields whose values changed (`configured`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Deleted:
    """What `ModuleRegistry.delete` did (or, in a dry run, would meet)."""

    record: ModuleRecord
    queued: int = 0
    """Events waiting (not running) when the delete began."""
    running: int = 0
    """Jobs running when the delete began."""
    drained: int = 0
    """Running jobs that finished while the delete waited."""
    cancelled: int = 0
    """Runs recorded CANCELLED: jobs cancelled, queued events never run."""
    dead_lettered: int = 0
    """Events kept as the deleted module's dead letters (reason ModuleDeleted, or their own)."""
    already_deleted: bool = False


class ModuleState:
    """Values of a module's one-word status."""

    RUNNING = "RUNNING"
    """Every dispatcher asked for runs."""
    DEGRADED = "DEGRADED"
    """Some, not all, dispatchers run."""
    STOPPED = "STOPPED"
    """No dispatcher runs (starting, or the deployer failed)."""
    DELETED = "DELETED"


def subscription_of(record: ModuleRecord) -> tuple[str, str]:
    """Return (topic, subscription) the module's dispatchers read: `<event>_<module>`, lowercase."""
    topic = record.spec.subscribes_to
    return topic, naming.subscription_name(topic, record.spec.name)


def state_of(record: ModuleRecord, runtime: Runtime) -> str:
    """Return the one-word status of a module from its record and runtime."""
    if record.deleted:
        return ModuleState.DELETED
    if runtime.dispatchers_running >= record.spec.instance_count:
        return ModuleState.RUNNING
    if runtime.dispatchers_running > 0:
        return ModuleState.DEGRADED
    return ModuleState.STOPPED


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleStatus:
    """Everything `ModuleService.Get` reports about one module."""

    record: ModuleRecord
    runtime: Runtime
    attempts: Counter[AttemptState] = field(default_factory=Counter)
    queued: int = 0
    dead_letter_queue: int = 0

    @property
    def failed(self) -> int:
        """Attempts that failed, the last attempt of each dead-lettered event included (it is
        recorded DEAD_LETTERED, not FAILED, but it failed all the same)."""
        return self.attempts[AttemptState.FAILED] + self.attempts[AttemptState.DEAD_LETTERED]

    @property
    def state(self) -> str:
        """RUNNING, DEGRADED, STOPPED or DELETED."""
        return state_of(self.record, self.runtime)

    @property
    def message(self) -> str:
        """One line a person reads: dispatchers, jobs and outcomes."""
        if self.record.deleted:
            head = "deleted; history kept"
        else:
            head = (
                f"{self.runtime.dispatchers_running}/{self.record.spec.instance_count}"
                f" dispatchers running, {self.runtime.jobs_in_flight} jobs in flight"
            )
        text = (
            f"{head}; {self.attempts[AttemptState.SUCCEEDED]} succeeded,"
            f" {self.failed} failed,"
            f" {self.attempts[AttemptState.DEAD_LETTERED]} dead-lettered"
        )
        if self.attempts[AttemptState.CANCELLED]:
            text += f", {self.attempts[AttemptState.CANCELLED]} cancelled"
        if self.runtime.last_error and not self.record.deleted:
            text += f"; last error: {self.runtime.last_error}"
        return text


class ModuleRegistry:
    """Create, find, list and delete modules; report their status."""

    def __init__(
        self,
        meta: MetadataStore,
        bus: EventBus,
        deployer: Deployer,
        *,
        route_executors: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        """`route_executors(provider)`: the executors routes of a module on that provider may
        name (`DispatcherSettings.route_executors`); None: routes are not checked here."""
        self._meta = meta
        self._route_executors = route_executors
        self._bus = bus
        self._deployer = deployer
        self._lock = asyncio.Lock()
        self._records: list[ModuleRecord] | None = None
        self._loaded_at = 0.0
        self._deleting: set[str] = set()

    @property
    def deployer(self) -> Deployer:
        """The deployer running the modules' dispatchers."""
        return self._deployer

    async def create(self, spec: ModuleSpec, *, provider: str = "") -> ModuleRecord:
        """Store a new module and start its dispatchers; return its record.

        Raises:
            errors.ValidationError: the provider is not one this server runs (field `provider`),
                a route names an executor its dispatchers do not have (`routes.N.executor`), or
                the provider's deployer could never run the spec (`SpecChecker`).
            errors.ConflictError: a live module has that name already.
        """
        chosen = self._provider(provider)
        self._check(spec, chosen)
        async with self._lock:
            for other in await self._meta.list_modules():
                if other.spec.name == spec.name:
                    raise errors.ConflictError(
                        f"module {spec.name!r} exists already as {other.id!r};"
                        f" delete it first (`ion module delete -n {other.id}`) or pick another name"
                    )
            record = await self._store_new(spec, chosen)
            self._invalidate()
        try:
            await self._deployer.deploy(record)
        except Exception:
            log.exception("deploying module %s failed; marking it deleted", record.id)
            await self._meta.replace_module(record.model_copy(update={"deleted": True}))
            self._invalidate()
            raise
        log.info("created module %s", record.id, extra={"ion_module": record.id})
        return record

    def _check_routes(self, spec: ModuleSpec, provider: str) -> None:
        if self._route_executors is None or not spec.routes:
            return
        have = list(self._route_executors(provider))
        for i, route in enumerate(spec.routes):
            if route.executor not in have:
                raise errors.ValidationError(
                    f"field 'routes.{i}.executor': executor {route.executor!r} is not configured"
                    f" for provider {provider!r} on this server; it has: {', '.join(have)}"
                    " (ION_DISPATCHER__ROUTES_TO adds more)",
                    field=f"routes.{i}.executor",
                    rule="UnknownExecutor",
                )

    async def _store_new(self, spec: ModuleSpec, provider: str) -> ModuleRecord:
        for _ in range(20):
            suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(_SUFFIX_LENGTH))
            module_id = f"{spec.name}-{suffix}"
            try:
                await self._meta.get_module(module_id)
                continue
            except errors.NotFoundError:
                pass
            record = ModuleRecord(
                id=module_id, spec=spec, provider=provider, created_at=datetime.now(UTC)
            )
            try:
                return await self._meta.create_module(record)
            except errors.ConflictError:
                continue
        raise errors.TransientError(f"could not find a free id for module {spec.name!r}; retry")

    async def resolve(self, ref: str) -> ModuleRecord:
        """Return the module with id `ref`, else the live module named `ref`, else the most
        recently created deleted one of that name (history stays reachable by name), else the
        one module whose id starts with `ref` (a live one before deleted ones).

        Raises:
            errors.NotFoundError: no such module.
            errors.ValidationError: `ref` starts the ids of several modules.
        """
        if not ref:
            raise errors.ValidationError("a module id is required", field="name", rule="required")
        try:
            return await self._meta.get_module(ref)
        except errors.NotFoundError:
            everything = await self._all()
            named = [m for m in everything if m.spec.name == ref]
            live = [m for m in named if not m.deleted]
            if live:
                return live[0]
            if named:
                return max(named, key=lambda m: m.created_at)
            started = [m for m in everything if m.id.startswith(ref)]
            for group in ([m for m in started if not m.deleted], started):
                if len(group) == 1:
                    return group[0]
                if group:
                    ids = ", ".join(m.id for m in group[:5]) + (", ..." if len(group) > 5 else "")
                    raise errors.ValidationError(
                        f"module id {ref!r} is ambiguous: it starts {ids}; give more characters",
                        field="name",
                        rule="AmbiguousId",
                    ) from None
            raise

    async def _all(self) -> list[ModuleRecord]:
        # List is the hot read (CLIs and dashboards poll it); this process writes every change
        # it makes through here, and changes made elsewhere show within CACHE_SECONDS.
        now = time.monotonic()
        if self._records is None or now - self._loaded_at > CACHE_SECONDS:
            self._records = await self._meta.list_modules(include_deleted=True)
            self._loaded_at = now
        return self._records

    def _invalidate(self) -> None:
        self._records = None

    async def list_modules(self, *, include_deleted: bool = False) -> list[ModuleRecord]:
        """Return modules sorted by id (deleted ones only if asked)."""
        return [m for m in await self._all() if include_deleted or not m.deleted]

    async def apply(
        self, spec: ModuleSpec, *, provider: str = "", dry_run: bool = False
    ) -> Applied:
        """Create the module, or update the live module of that name in place.

        An update keeps the module's id and subscription (queued events stay and run with the
        new spec); the dispatchers are replaced. A spec equal to the stored one is `unchanged`.

        Raises:
            errors.ValidationError: as `create`; also a change of `subscribes_to` or provider
                (a different subscription or deployer: delete the module and apply again).
        """
        live = [m for m in await self._all() if not m.deleted and m.spec.name == spec.name]
        if not live:
            if dry_run:
                self._check(spec, self._provider(provider))
                return Applied(record=None, action="created")
            return Applied(record=await self.create(spec, provider=provider), action="created")
        async with self._lock:
            current = await self._meta.get_module(live[0].id)
            chosen = self._provider(provider) if provider else current.provider
            for fieldname, old, new in (
                ("eventsubscriptions", current.spec.subscribes_to, spec.subscribes_to),
                ("provider", current.provider, chosen),
            ):
                if old != new:
                    raise errors.ValidationError(
                        f"field {fieldname!r}: module {current.id!r} has {old!r}; changing it to"
                        f" {new!r} would give it another subscription or deployer, which an"
                        f" update in place cannot; delete it first (`ion module delete -n"
                        f" {current.id}`, which drains it) and apply again",
                        field=fieldname,
                        rule="Immutable",
                    )
            changed = tuple(
                name
                for name in ModuleSpec.model_fields
                if getattr(current.spec, name) != getattr(spec, name)
            )
            if not changed:
                return Applied(record=current, action="unchanged")
            self._check(spec, chosen)
            if dry_run:
                return Applied(record=current, action="configured", changed=changed)
            updated = await self._meta.replace_module(current.model_copy(update={"spec": spec}))
            self._invalidate()
        if isinstance(self._deployer, Drainer):
            await self._deployer.update(updated)
        else:
            await self._deployer.deploy(updated)
        log.info(
            "updated module %s (%s)",
            updated.id,
            ", ".join(changed),
            extra={"ion_module": updated.id},
        )
        return Applied(record=updated, action="configured", changed=changed)

    def _provider(self, provider: str) -> str:
        chosen = (provider or self._deployer.default_provider).lower()
        if chosen not in self._deployer.providers:
            served = ", ".join(sorted(self._deployer.providers))
            raise errors.ValidationError(
                f"provider {provider!r} is not served by this management server; use one of:"
                f" {served} (or leave it empty)",
                field="provider",
                rule="provider",
            )
        return chosen

    def _check(self, spec: ModuleSpec, provider: str) -> None:
        self._check_routes(spec, provider)
        if isinstance(self._deployer, SpecChecker):
            self._deployer.check(spec, provider)

    async def delete(
        self,
        ref: str,
        *,
        force: bool = False,
        timeout: float = DRAIN_SECONDS,
        dry_run: bool = False,
        on_progress: Callable[[str], None] | None = None,
    ) -> Deleted:
        """Delete a module without losing an event; deleting a deleted module changes nothing.

        Without `force`: refuse while events wait on its subscription; otherwise stop
        receiving, wait up to `timeout` seconds for the running jobs, then retire the
        subscription and mark the module deleted. With `force`: running jobs are cancelled
        (and their folders removed) at once and waiting events kept as dead letters with
        reason ModuleDeleted; the runs of both are recorded CANCELLED. `on_progress` gets a
        line about once a second while jobs drain.

        Raises:
            errors.NotFoundError: no such module.
            errors.PreconditionError: (without `force`) events are queued, or jobs were still
                running at the timeout; nothing was deleted and the module keeps running.
        """
        timeout = min(max(timeout, 0.0), MAX_DRAIN_SECONDS)
        say = on_progress or (lambda _line: None)
        record = await self.resolve(ref)
        if record.deleted:
            return Deleted(record=record, already_deleted=True)
        runtime = await self.runtime(record)
        topic, subscription = subscription_of(record)
        try:
            counts = await self._bus.counts(topic, subscription)
            waiting = counts.active + counts.scheduled
        except errors.NotFoundError:
            waiting = 0
        running = runtime.jobs_in_flight
        queued = max(0, waiting - running)  # a running job's message is locked, not waiting
        if dry_run:
            return Deleted(record=record, queued=queued, running=running)
        if record.id in self._deleting:
            raise errors.PreconditionError(f"module {record.id} is being deleted already")
        self._deleting.add(record.id)
        try:
            return await self._delete(
                record, queued=queued, running=running, force=force, timeout=timeout, say=say
            )
        finally:
            self._deleting.discard(record.id)

    async def _delete(
        self,
        record: ModuleRecord,
        *,
        queued: int,
        running: int,
        force: bool,
        timeout: float,
        say: Callable[[str], None],
    ) -> Deleted:
        if queued and not force:
            raise errors.PreconditionError(
                f"module {record.id} has {queued} queued event(s) (and {running} running job(s));"
                " nothing was deleted. Wait for them to run (`ion module get -n"
                f" {record.id}` shows `queued`), or delete with --force: running jobs are"
                " cancelled and queued events dead-lettered with reason ModuleDeleted"
                " (`ion event dlq list` lists them, `ion event dlq replay` resends them once a"
                f" module named {record.spec.name} subscribes again); their runs show CANCELLED"
            )
        drains = isinstance(self._deployer, Drainer) and self._deployer.drains(record)
        left = 0
        if drains:
            assert isinstance(self._deployer, Drainer)
            grace = 0.0 if force else timeout
            if running and not force:
                say(f"stopped receiving; waiting up to {timeout:g}s for {running} running job(s)")

            def progress(state: Draining) -> None:
                say(
                    f"waiting for {state.jobs_in_flight} running job(s) of {record.id}"
                    f" ({state.waited:.0f}s of {state.timeout:g}s)"
                )

            left = await self._deployer.stop(record, grace=grace, on_progress=progress)
            if left and not force:
                await self._deployer.deploy(record)  # back as it was; it adopts its jobs
                raise errors.PreconditionError(
                    f"module {record.id}: {left} job(s) still running after {timeout:g}s;"
                    " nothing was deleted and the module is receiving again. Delete with a"
                    " longer --drain-timeout, or with --force to cancel them"
                )
        jobs = [
            (a.id, a.route.executor if a.route else None)
            for a in await self._attempts(record)
            if a.state in (AttemptState.RUNNING, AttemptState.PENDING)
        ]
        if drains and force and jobs:
            assert isinstance(self._deployer, Drainer)
            say(f"cancelling {len(jobs)} running job(s)")
            await self._deployer.cancel_jobs(record, jobs)
        why = f"module {record.id} was deleted" + (" with --force" if force else "")
        retired = await retire.retire(self._bus, self._meta, record, why=why)
        async with self._lock:
            await self._deployer.undeploy(record)
            current = await self._meta.get_module(record.id)
            await self._meta.replace_module(current.model_copy(update={"deleted": True}))
            self._invalidate()
        log.info("deleted module %s", record.id, extra={"ion_module": record.id})
        return Deleted(
            record=record.model_copy(update={"deleted": True}),
            queued=queued,
            running=running,
            drained=max(0, running - left) if not force else 0,
            cancelled=retired.cancelled,
            dead_lettered=retired.dead_lettered,
        )

    async def runtime(self, record: ModuleRecord) -> Runtime:
        """Return what runs for a module (nothing, once deleted)."""
        if record.deleted:
            return Runtime()
        return await self._deployer.runtime(record)

    async def status(self, record: ModuleRecord) -> ModuleStatus:
        """Return a module's runtime, attempt counts and queue depths."""
        runtime = await self.runtime(record)
        attempts = Counter(a.state for a in await self._attempts(record))
        queued = dead = 0
        if not record.deleted:
            topic, subscription = subscription_of(record)
            try:
                counts = await self._bus.counts(topic, subscription)
                queued, dead = counts.active + counts.scheduled, counts.dead_lettered
            except errors.NotFoundError:
                pass
        return ModuleStatus(
            record=record, runtime=runtime, attempts=attempts, queued=queued, dead_letter_queue=dead
        )

    async def _attempts(self, record: ModuleRecord) -> list[JobAttempt]:
        # Attempts are keyed by module name; keep those of this module's lifetime only, since
        # a deleted module's name may be reused.
        return [
            a
            for a in await self._meta.list_attempts(module=record.spec.name)
            if a.started_at is None or a.started_at >= record.created_at
        ]

    async def restore(self) -> list[str]:
        """Start the dispatchers of every live module (at server start); return their ids."""
        started: list[str] = []
        for record in await self._meta.list_modules():
            try:
                await self._deployer.deploy(record)
                started.append(record.id)
            except Exception:
                log.exception(
                    "could not start module %s", record.id, extra={"ion_module": record.id}
                )
        return started
