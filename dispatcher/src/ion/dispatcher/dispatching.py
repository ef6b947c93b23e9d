"""The dispatcher of one module: receive events, run one job per event, settle the message.

At-least-once delivery becomes effectively-once effects here:
- a poison message (not JSON, no context, wrong type) is dead-lettered at once with a reason;
- the job's id is derived from (module, event id, attempt); a redelivered message finds the job
  by that id and adopts it, or finds the attempt already recorded and only settles the message;
- the message lock is renewed while the job runs; losing it is logged, never fatal;
- a failed attempt is retried by scheduling a copy of the message for this module's
  subscription only, after exponential backoff; the last failure is dead-lettered with the
  reason and a link to the logs;
- outputs are committed only after exit 0, and commit is idempotent (see ion.handler.commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from opentelemetry import propagate, trace

from ion.core import errors, logs
from ion.core.clock import Clock, SystemClock
from ion.core.contract import JobLayout
from ion.core.events import Context, DocumentType, Event, ModuleLogs, module_logs_id
from ion.core.modules import ModuleSpec
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus, OutgoingMessage, ReceivedMessage, SubscriptionOptions
from ion.core.ports.executor import JobRequest, JobState, JobStatus
from ion.core.ports.meta import MetadataStore
from ion.core.records import AttemptState, JobAttempt
from ion.dispatcher import naming
from ion.dispatcher.executors.local import LocalExecutor
from ion.handler.commit import CommitResult, commit
from ion.handler.job import HandlerJob
from ion.handler.prepare import prepare

log = logging.getLogger(__name__)
tracer = trace.get_tracer("ion.dispatcher")

ATTEMPT_PROPERTY = "ion-attempt"
MAX_ATTEMPT_PROPERTY = "ion-max-attempt"
REDELIVERY_ALLOWANCE = 3
"""Deliveries allowed beyond the retries, for redeliveries after a crash or a lost lock."""


@dataclass(kw_only=True)
class DispatcherStats:
    """Counters a dispatcher keeps while it runs."""

    succeeded: int = 0
    failed: int = 0
    dead_lettered: int = 0
    poison: int = 0
    adopted: int = 0
    in_flight_ids: set[str] = field(default_factory=set)

    @property
    def in_flight(self) -> int:
        """Messages being handled right now."""
        return len(self.in_flight_ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatcherOptions:
    """How a dispatcher behaves, beyond its module's spec."""

    lock_duration: timedelta = timedelta(seconds=30)
    receive_wait: timedelta = timedelta(seconds=1)
    shutdown_grace: timedelta = timedelta(seconds=10)
    url_lifetime: timedelta = timedelta(days=7)
    identity: str = ""
    working_dir: Path | None = None
    """Where relative module commands resolve (the pipeline file's directory)."""


class Dispatcher:
    """Runs jobs of one module for the events it subscribes to."""

    def __init__(
        self,
        spec: ModuleSpec,
        *,
        bus: EventBus,
        blobs: BlobStore,
        meta: MetadataStore,
        executor: LocalExecutor,
        options: DispatcherOptions | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.spec = spec
        self._bus, self._blobs, self._meta, self._executor = bus, blobs, meta, executor
        self.options = options or DispatcherOptions()
        self._clock = clock or SystemClock()
        self.identity = self.options.identity or f"{socket.gethostname()}-{os.getpid()}-{spec.name}"
        self.topic = spec.subscribes_to
        self.subscription = naming.subscription_name(spec.subscribes_to, spec.name)
        self.stats = DispatcherStats()

    async def ensure_entities(self) -> None:
        """Create the module's subscription and the topics it publishes to."""
        await self._bus.ensure_subscription(
            self.topic,
            self.subscription,
            SubscriptionOptions(
                max_delivery_count=self.spec.max_attempts + REDELIVERY_ALLOWANCE,
                lock_duration=self.options.lock_duration,
            ),
        )
        for topic in self.spec.publishes:
            await self._bus.ensure_topic(topic)

    async def run(self, stop: asyncio.Event) -> None:
        """Receive and handle messages until `stop` is set, then shut down gracefully.

        Call `ensure_entities` once first (replicas of a module share its entities).
        In-flight jobs get `shutdown_grace` to finish; jobs still running after that keep
        running as processes, and their messages return to the bus when the lock lapses, so
        the next dispatcher adopts them.
        """
        slots = asyncio.Semaphore(self.spec.max_in_flight)
        handlers: set[asyncio.Task[None]] = set()
        log.info("dispatcher %s receiving from %s/%s", self.identity, self.topic, self.subscription)
        with logs.bind(module=self.spec.name):
            while not stop.is_set():
                await slots.acquire()
                free = self.spec.max_in_flight - len(handlers)
                try:
                    messages = await self._receive(stop, max_messages=max(1, free))
                except BaseException:
                    slots.release()
                    raise
                if not messages:
                    slots.release()
                    continue
                for i, message in enumerate(messages):
                    if i > 0:
                        await slots.acquire()
                    task = asyncio.create_task(
                        self._handle_guarded(message, stop), name=message.message_id
                    )
                    handlers.add(task)
                    task.add_done_callback(handlers.discard)
                    task.add_done_callback(lambda _: slots.release())
            await self._shutdown(handlers)

    async def _receive(self, stop: asyncio.Event, *, max_messages: int) -> list[ReceivedMessage]:
        receive = asyncio.ensure_future(
            self._bus.receive(
                self.topic,
                self.subscription,
                max_messages=max_messages,
                max_wait=self.options.receive_wait,
            )
        )
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({receive, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not receive.done():
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                got = await receive
                for message in got:  # received while we were stopping: give them back
                    await self._settle(self._bus.abandon, message)
            return []
        try:
            return receive.result()
        except errors.TransientError as err:
            log.warning("receive failed, retrying: %s", err)
            await self._clock.sleep(timedelta(seconds=1))
            return []
        except errors.NotFoundError as err:
            # The subscription vanished under us (deleted by hand?): recreate it, keep going.
            log.error("receive failed (%s); recreating the subscription", err)
            await self._clock.sleep(timedelta(seconds=1))
            await self.ensure_entities()
            return []

    async def _shutdown(self, handlers: set[asyncio.Task[None]]) -> None:
        if handlers:
            log.info(
                "stopping: %d job(s) in flight, waiting up to %s",
                len(handlers),
                self.options.shutdown_grace,
            )
            _, pending = await asyncio.wait(
                handlers, timeout=self.options.shutdown_grace.total_seconds()
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        log.info("dispatcher %s stopped", self.identity)

    async def _handle_guarded(self, message: ReceivedMessage, stop: asyncio.Event) -> None:
        self.stats.in_flight_ids.add(message.message_id)
        try:
            await self.handle(message, stop=stop)
        except asyncio.CancelledError:
            log.info("left message %s for redelivery (job keeps running)", message.message_id)
            raise
        except Exception:
            # Never let one message kill the dispatcher; the lock lapses and it comes back.
            log.exception(
                "unexpected error handling message %s; it will be redelivered", message.message_id
            )
        finally:
            self.stats.in_flight_ids.discard(message.message_id)

    async def _settle(
        self, action: Callable[..., Awaitable[None]], message: ReceivedMessage, **kwargs: str
    ) -> bool:
        """Settle a message; a lost lock is logged and reported as False, never raised."""
        try:
            await action(message, **kwargs)
        except errors.LockLostError as err:
            log.warning("could not settle %s: %s", message.message_id, err)
            return False
        return True

    async def handle(self, message: ReceivedMessage, *, stop: asyncio.Event | None = None) -> None:
        """Handle one message from start to settlement (see the module docstring)."""
        try:
            event = Event.from_json(message.body)
            if event.type != self.spec.subscribes_to:
                raise errors.PoisonMessageError(
                    f"event type {event.type!r} arrived on {self.topic!r}; expected {self.spec.subscribes_to!r}",
                    reason="WrongEventType",
                    field="type",
                )
        except errors.PoisonMessageError as err:
            self.stats.poison += 1
            log.warning("dead-lettering poison message %s: %s", message.message_id, err)
            await self._settle(
                self._bus.dead_letter, message, reason=err.reason, description=str(err)[:1000]
            )
            return
        attempt = _int_property(message, ATTEMPT_PROPERTY, 1)
        max_attempt = _int_property(message, MAX_ATTEMPT_PROPERTY, self.spec.max_attempts)
        job = naming.job_id(self.spec.name, event.event_id, attempt)
        with (
            logs.bind(
                correlation_id=event.correlation_id,
                event_id=event.event_id,
                job_id=job,
                attempt=attempt,
            ),
            tracer.start_as_current_span(
                "job",
                context=propagate.extract(dict(message.properties)),
                attributes={"ion.module": self.spec.name, "ion.job": job, "ion.attempt": attempt},
            ),
        ):
            renewer = asyncio.create_task(self._renew(message))
            try:
                await self._run_attempt(message, event, job, attempt, max_attempt, stop)
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer

    async def _renew(self, message: ReceivedMessage) -> None:
        interval = self.options.lock_duration / 3
        while True:
            await self._clock.sleep(interval)
            try:
                await self._bus.renew_lock(message)
            except errors.LockLostError as err:
                log.warning(
                    "lost the lock on %s (the job goes on; a redelivery will adopt it): %s",
                    message.message_id,
                    err,
                )
                return
            except errors.TransientError as err:
                log.warning(
                    "could not renew the lock on %s, will retry: %s", message.message_id, err
                )

    async def _run_attempt(
        self,
        message: ReceivedMessage,
        event: Event,
        job: str,
        attempt: int,
        max_attempt: int,
        stop: asyncio.Event | None,
    ) -> None:
        record = await self._get_attempt(event, job)
        if record is not None and record.state == AttemptState.SUCCEEDED:
            log.info("attempt already succeeded; completing the redelivered message")
            await self._settle(self._bus.complete, message)
            return
        if record is not None and record.state in (AttemptState.FAILED, AttemptState.DEAD_LETTERED):
            await self._after_failure(message, event, record, max_attempt)
            return
        try:
            status: JobStatus | None = await self._executor.status(job)
        except errors.NotFoundError:
            status = None
        base_dir = self._executor.base_dir(job)
        handler_job = HandlerJob(
            module=self.spec.name,
            event=event,
            publishes=frozenset(self.spec.publishes),
            layout=JobLayout(base_dir),
        )
        record = JobAttempt(
            id=job,
            module=self.spec.name,
            event_id=event.event_id,
            correlation_id=event.correlation_id,
            parent_event_id=event.context.parent_event_id,
            event_type=event.type,
            attempt=attempt,
            state=AttemptState.RUNNING,
            started_at=self._clock.now(),
            dispatcher=self.identity,
        )
        if status is None:
            if stop is not None and stop.is_set():
                await self._settle(self._bus.abandon, message)  # not started: leave it for others
                return
            # Recorded (while the inputs download) before the module starts, so a redelivery
            # can tell this attempt began.
            try:
                # Both finish before either's error is looked at, so the RUNNING record can
                # never land after the FAILED one written below.
                started = await asyncio.gather(
                    self._meta.upsert_attempt(record),
                    prepare(handler_job, blobs=self._blobs, meta=self._meta),
                    return_exceptions=True,
                )
                for failure in started:
                    if isinstance(failure, BaseException):
                        raise failure
            except errors.IonError as err:
                await self._fail(
                    message, event, record, max_attempt, f"prepare failed: {err}", exit_code=None
                )
                return
            status = await self._executor.submit(
                JobRequest(
                    job_id=job,
                    module=self.spec.name,
                    command=self.spec.command,
                    image=self.spec.image,
                    env=self.spec.env,
                    base_dir=base_dir,
                    working_dir=Path(self.spec.working_dir)
                    if self.spec.working_dir
                    else self.options.working_dir,
                    max_execution=self.spec.max_execution,
                    labels={
                        "ion/module": self.spec.name,
                        "ion/eventid": event.event_id,
                        "ion/attempt": str(attempt),
                    },
                )
            )
        else:
            self.stats.adopted += 1
            log.info("adopting job %s (%s)", job, status.state)
            if status.started_at is not None:
                record = record.evolve(started_at=status.started_at)
        final = await self._executor.wait(job) if status.state == JobState.RUNNING else status
        succeeded = final.state == JobState.SUCCEEDED
        # Logs are stored while the outputs are committed: neither needs the other.
        stored = self._store_logs(event, job, attempt, succeeded=succeeded)
        committed = self._commit(handler_job) if succeeded else _nothing()
        logs_ref, outcome = await asyncio.gather(stored, committed)
        record = record.evolve(logs_ref=logs_ref, exit_code=final.exit_code)
        if not succeeded:
            if final.timed_out:
                reason = (
                    f"killed after its max execution time of {self.spec.max_execution_seconds:g}s"
                )
            elif final.state == JobState.LOST:
                reason = "the job's process vanished without an exit code (killed from outside?)"
            else:
                reason = f"module exited with code {final.exit_code}"
            await self._fail(message, event, record, max_attempt, reason, exit_code=final.exit_code)
            return
        if isinstance(outcome, errors.ValidationError):
            await self._fail(
                message,
                event,
                record,
                max_attempt,
                f"commit refused the outputs: {outcome}",
                exit_code=0,
            )
            return
        if outcome is None:  # unreachable: a successful job is always committed
            raise RuntimeError(f"job {job} succeeded but was not committed")
        result = outcome
        await self._meta.upsert_attempt(
            record.evolve(
                state=AttemptState.SUCCEEDED,
                finished_at=self._clock.now(),
                outputs=result.outputs,
                child_event_ids=[e.event_id for e in result.events],
            )
        )
        self.stats.succeeded += 1
        log.info(
            "job succeeded: %d output(s), %d event(s)", len(result.outputs), len(result.events)
        )
        if await self._settle(self._bus.complete, message):
            await self._executor.delete(job)

    async def _commit(self, handler_job: HandlerJob) -> CommitResult | errors.ValidationError:
        """Commit the outputs; a refusal (bad event file, path escape) is returned, not raised."""
        try:
            return await commit(
                handler_job,
                blobs=self._blobs,
                meta=self._meta,
                bus=self._bus,
                url_lifetime=self.options.url_lifetime,
            )
        except errors.ValidationError as err:
            return err

    async def _get_attempt(self, event: Event, job: str) -> JobAttempt | None:
        try:
            return await self._meta.get_attempt(event.correlation_id, job)
        except errors.NotFoundError:
            return None

    async def _fail(
        self,
        message: ReceivedMessage,
        event: Event,
        record: JobAttempt,
        max_attempt: int,
        reason: str,
        *,
        exit_code: int | None,
    ) -> None:
        final_state = (
            AttemptState.DEAD_LETTERED if record.attempt >= max_attempt else AttemptState.FAILED
        )
        record = record.evolve(
            state=final_state, finished_at=self._clock.now(), reason=reason, exit_code=exit_code
        )
        await self._meta.upsert_attempt(record)
        self.stats.failed += 1
        log.warning("attempt %d of %d failed: %s", record.attempt, max_attempt, reason)
        await self._after_failure(message, event, record, max_attempt)

    async def _after_failure(
        self, message: ReceivedMessage, event: Event, record: JobAttempt, max_attempt: int
    ) -> None:
        """Schedule the next attempt, or dead-letter; safe to repeat for the same record."""
        if record.attempt < max_attempt:
            delay = self.spec.backoff_before(record.attempt + 1)
            retry = OutgoingMessage(
                body=message.body,
                message_id=f"{event.event_id}.{self.spec.name}.attempt-{record.attempt + 1}",
                properties={
                    **message.properties,
                    ATTEMPT_PROPERTY: str(record.attempt + 1),
                    MAX_ATTEMPT_PROPERTY: str(max_attempt),
                },
                scheduled_at=self._clock.now() + delay,
                to_subscription=self.subscription,
            )
            # Publish the retry before completing: a crash in between duplicates the retry
            # message, which duplicate detection (same message id) then drops.
            await self._bus.publish(self.topic, [retry])
            log.info("retrying as attempt %d in %s", record.attempt + 1, delay)
            if await self._settle(self._bus.complete, message):
                await self._executor.delete(record.id)
            return
        self.stats.dead_lettered += 1
        description = f"{record.reason}; logs: {record.logs_ref or 'none'}"
        log.error("giving up after %d attempt(s); dead-lettering: %s", record.attempt, description)
        if await self._settle(
            self._bus.dead_letter, message, reason="ModuleFailed", description=description[:1000]
        ):
            await self._executor.delete(record.id)

    async def _store_logs(self, event: Event, job: str, attempt: int, *, succeeded: bool) -> str:
        key = naming.logs_key(event.correlation_id, event.event_id, self.spec.name, attempt)
        log_file = self._executor.job_dir(job) / "module.log"
        if not log_file.exists():
            log_file.parent.mkdir(parents=True, exist_ok=True)
            log_file.write_bytes(b"")
        await self._blobs.put_file(key, log_file)
        doc_id = module_logs_id(self.spec.name, event.event_id, attempt)
        await self._meta.upsert_module_logs(
            ModuleLogs(
                id=doc_id,
                context=Context(
                    name=self.spec.name,
                    event_id=event.event_id,
                    correlation_id=event.correlation_id,
                    parent_event_id=event.context.parent_event_id,
                ).as_document(DocumentType.MODULE_LOGS),
                desc=doc_id,
                logs=await self._blobs.url_for(key, expires_in=self.options.url_lifetime),
                succeeded=succeeded,
            )
        )
        return key


async def _nothing() -> None:
    return None


def _int_property(message: ReceivedMessage, key: str, default: int) -> int:
    try:
        return int(message.properties.get(key, default))
    except (TypeError, ValueError):
        return default
