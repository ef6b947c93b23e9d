"""The dispatcher of one module: receive events, run one job per event, settle the message.

The dispatcher keeps the receive loop, lock renewal, the attempt state machine, retries and
settlement; the job itself (prepare → module → commit) is its executor's, behind the
`Executor` port. At-least-once delivery becomes effectively-once effects here:
- a poison message (not a valid event) is dead-lettered at once with a reason naming the field;
- the job's id is derived from (module, event id, attempt); a redelivered message finds the job
  by that id and adopts it, or finds the attempt already recorded and only settles the message;
- the message lock is renewed while the job runs; losing it is logged, never fatal;
- a failed attempt is retried by scheduling a copy of the message for this module's
  subscription only, after exponential backoff; the last failure is dead-lettered with the
  reason (the cause and the module's last output) and a link to the logs;
- a backend error on receive, settle or a job's finish is retried with backoff; the
  dispatcher keeps going.

Before a job starts, the module's rules are applied (`ion.core.routing`): an event its `when`
does not match is recorded as FILTERED and completed, never run; otherwise its `routes` pick
the executor (by name, among those this dispatcher holds) and the resources, and the choice is
recorded on the attempt, so a redelivery or a retry's clean-up goes to the same executor.

Telemetry: each message is a `receive` span (its parent is the span that published the event,
from the message's `traceparent`), each attempt an `attempt` span under it whose context the
job carries (`JobRequest.trace_context`); both name the module, event and attempt. Counters
and histograms go to `ion.core.metrics` (docs/observability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ion.core import attempts, errors, failpoints, logs, metrics, naming, routing, telemetry
from ion.core.clock import Clock, SystemClock
from ion.core.events import Event
from ion.core.modules import ModuleSpec
from ion.core.ports.blobs import BlobStore
from ion.core.ports.bus import EventBus, ReceivedMessage, SubscriptionOptions
from ion.core.ports.executor import BackendRefs, Executor, JobRequest, JobResult, JobState
from ion.core.ports.meta import MetadataStore
from ion.core.records import AttemptState, JobAttempt, RouteChoice

log = logging.getLogger(__name__)
tracer = trace.get_tracer("ion.dispatcher")

MAX_BACKOFF = timedelta(seconds=30)
"""Longest wait between retries of a failing backend call."""
SETTLE_TRIES = 5


@dataclass(kw_only=True)
class DispatcherStats:
    """Counters a dispatcher keeps while it runs."""

    succeeded: int = 0
    failed: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    poison: int = 0
    adopted: int = 0
    in_flight_ids: set[str] = field(default_factory=set)
    left_running: int = 0
    """Jobs still running when the dispatcher stopped (their messages return to the bus)."""

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
    backends: BackendRefs = field(default_factory=BackendRefs)
    """Backend URLs handed to jobs that run elsewhere (never credentials)."""
    cancel_poll: timedelta = timedelta(seconds=1)
    """How often the flow of a running job is checked for a cancellation (`ion flow cancel`)."""


async def _acquire_unless_stopped(slots: asyncio.Semaphore, stop: asyncio.Event) -> bool:
    """Take a slot, or give up when `stop` is set first (True: a slot is held)."""
    if stop.is_set():
        return False
    acquire = asyncio.ensure_future(slots.acquire())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not acquire.done():
            acquire.cancel()
    if acquire.done() and not acquire.cancelled():
        if stop.is_set():
            slots.release()
            return False
        return True
    return False


class Dispatcher:
    """Runs jobs of one module for the events it subscribes to."""

    def __init__(
        self,
        spec: ModuleSpec,
        *,
        bus: EventBus,
        meta: MetadataStore,
        executor: Executor,
        options: DispatcherOptions | None = None,
        clock: Clock | None = None,
        executors: Mapping[str, Executor] | None = None,
        default_executor: str = "local",
        blobs: BlobStore | None = None,
    ) -> None:
        """`executor` runs jobs no route sends elsewhere; it is `executors[default_executor]`.

        `executors`: every executor this dispatcher holds by name, for the module's routes.
        `blobs`: where rules read input file sizes (`files.size`); without it sizes are unknown.
        """
        self.spec = spec
        self._bus, self._meta, self._executor = bus, meta, executor
        self._blobs = blobs
        self.default_executor = default_executor
        self._executors: dict[str, Executor] = {**(executors or {}), default_executor: executor}
        self.options = options or DispatcherOptions()
        self._clock = clock or SystemClock()
        self.identity = self.options.identity or f"{socket.gethostname()}-{os.getpid()}-{spec.name}"
        self.topic = spec.subscribes_to
        self.subscription = naming.subscription_name(spec.subscribes_to, spec.name)
        self.stats = DispatcherStats()
        self.shutdown_grace = self.options.shutdown_grace
        """How long in-flight jobs get once `stop` is set; may be changed before setting it."""
        self._receive_delay = timedelta(seconds=0.5)

    async def ensure_entities(self) -> None:
        """Create the module's subscription and the topics it publishes to."""
        await self._bus.ensure_subscription(
            self.topic,
            self.subscription,
            SubscriptionOptions(
                max_delivery_count=attempts.max_delivery_count(self.spec.max_attempts),
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
                if not await _acquire_unless_stopped(slots, stop):
                    break  # stopped while every slot was busy: receive nothing more
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
            got = receive.result()
        except errors.NotFoundError as err:
            # The subscription vanished under us (deleted by hand?): recreate it, keep going.
            metrics.RECEIVE_ERRORS.labels(self.spec.name).inc()
            log.error("receive failed (%s); recreating the subscription", err)
            await self._backoff()
            with contextlib.suppress(errors.IonError):
                await self.ensure_entities()
            return []
        except errors.IonError as err:
            metrics.RECEIVE_ERRORS.labels(self.spec.name).inc()
            log.warning("receive failed, retrying in %s: %s", self._receive_delay, err)
            await self._backoff()
            return []
        except Exception:
            metrics.RECEIVE_ERRORS.labels(self.spec.name).inc()
            log.exception("receive failed unexpectedly, retrying in %s", self._receive_delay)
            await self._backoff()
            return []
        self._receive_delay = timedelta(seconds=0.5)
        return got

    async def _backoff(self) -> None:
        """Wait before the next receive after a failure, twice as long each time (capped)."""
        await self._clock.sleep(self._receive_delay)
        self._receive_delay = min(self._receive_delay * 2, MAX_BACKOFF)

    async def _shutdown(self, handlers: set[asyncio.Task[None]]) -> None:
        if handlers:
            log.info(
                "stopping: %d job(s) in flight, waiting up to %s",
                len(handlers),
                self.shutdown_grace,
            )
            pending = set(handlers)
            if self.shutdown_grace > timedelta(0):
                _, pending = await asyncio.wait(
                    handlers, timeout=self.shutdown_grace.total_seconds()
                )
            self.stats.left_running = len(pending)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        log.info("dispatcher %s stopped", self.identity)

    async def _handle_guarded(self, message: ReceivedMessage, stop: asyncio.Event) -> None:
        self.stats.in_flight_ids.add(message.message_id)
        in_flight = metrics.JOBS_IN_FLIGHT.labels(self.spec.name)
        in_flight.inc()
        try:
            await self.handle(message, stop=stop)
        except asyncio.CancelledError:
            log.info("left message %s for redelivery (job keeps running)", message.message_id)
            raise
        except errors.TransientError as err:
            # A backend is down: the lock lapses and the message comes back to be resumed.
            log.warning("could not handle %s (%s); it will be redelivered", message.message_id, err)
        except Exception:
            # Never let one message kill the dispatcher; the lock lapses and it comes back.
            log.exception(
                "unexpected error handling message %s; it will be redelivered", message.message_id
            )
        finally:
            in_flight.dec()
            self.stats.in_flight_ids.discard(message.message_id)

    async def _settle(
        self, action: Callable[..., Awaitable[None]], message: ReceivedMessage, **kwargs: str
    ) -> bool:
        """Settle a message; a lost lock is logged and reported as False, never raised.

        A backend error is retried with backoff a few times; if it persists the message is
        left to come back when its lock lapses (every path from a redelivery is idempotent).
        """
        delay = timedelta(seconds=0.2)
        for tries in range(1, SETTLE_TRIES + 1):
            try:
                await action(message, **kwargs)
            except errors.LockLostError as err:
                metrics.SETTLE_ERRORS.labels(self.spec.name).inc()
                log.warning("could not settle %s: %s", message.message_id, err)
                return False
            except errors.TransientError as err:
                metrics.SETTLE_ERRORS.labels(self.spec.name).inc()
                if tries == SETTLE_TRIES:
                    log.warning(
                        "could not settle %s, leaving it to return: %s", message.message_id, err
                    )
                    return False
                log.warning(
                    "settling %s failed, retrying in %s: %s", message.message_id, delay, err
                )
                await self._clock.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            else:
                return True
        return False

    async def handle(self, message: ReceivedMessage, *, stop: asyncio.Event | None = None) -> None:
        """Handle one message from start to settlement (see the module docstring), in a
        `receive` span joined to the trace the message carries."""
        metrics.EVENTS_RECEIVED.labels(self.spec.name).inc()
        with tracer.start_as_current_span(
            "receive",
            context=propagate.extract(dict(message.properties)),
            kind=SpanKind.CONSUMER,
            attributes={
                telemetry.MODULE: self.spec.name,
                "messaging.system": "ion",
                "messaging.destination.name": self.topic,
                "messaging.message.id": message.message_id,
                "ion.delivery_count": message.delivery_count,
            },
        ) as span:
            await self._handle(message, stop, span)

    async def _handle(
        self, message: ReceivedMessage, stop: asyncio.Event | None, span: trace.Span
    ) -> None:
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
            metrics.POISON_MESSAGES.labels(self.spec.name, err.reason).inc()
            span.set_status(Status(StatusCode.ERROR, f"poison message: {err.reason}"))
            span.set_attribute("ion.outcome", "poison")
            log.warning("dead-lettering poison message %s: %s", message.message_id, err)
            await self._settle(
                self._bus.dead_letter, message, reason=err.reason, description=str(err)[:1000]
            )
            return
        failpoints.reach("dispatcher.received")
        attempt = attempts.attempt_of(message.properties)
        max_attempt = attempts.int_property(
            message.properties, attempts.MAX_ATTEMPT_PROPERTY, self.spec.max_attempts
        )
        job = naming.job_id(self.spec.name, event.event_id, attempt)
        attributes = telemetry.event_attributes(event, module=self.spec.name, attempt=attempt)
        span.set_attributes(attributes)
        with (
            logs.bind(
                correlation_id=event.correlation_id,
                event_id=event.event_id,
                job_id=job,
                attempt=attempt,
            ),
            tracer.start_as_current_span(
                "attempt", attributes={**attributes, telemetry.JOB_ID: job}
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
        # Always looked up: a duplicate of the event can arrive as a first delivery too.
        record = await self._get_attempt(event, job)
        if record is not None and record.state in (
            AttemptState.SUCCEEDED,
            AttemptState.FILTERED,
            AttemptState.CANCELLED,
        ):
            log.info("attempt already %s; completing the redelivered message", record.state.value)
            await self._settle(self._bus.complete, message)
            return
        if record is not None and record.state in (AttemptState.FAILED, AttemptState.DEAD_LETTERED):
            await self._after_failure(message, event, record, max_attempt)
            return
        if record is not None:
            route = record.route  # decided before: the job is where it was sent
        else:
            decision = await self._decide(event)
            if not decision.run:
                await self._filter(message, event, job, attempt, decision.reason)
                return
            route = decision.route
        try:
            executor = self._executor_for(route)
        except errors.NotFoundError as err:
            await self._unroutable(message, event, job, attempt, route, str(err))
            return
        known: JobResult | None = None
        if record is not None or message.delivery_count > 1:
            with contextlib.suppress(errors.NotFoundError):
                known = await executor.status(job)
        record = self._attempt(event, job, attempt, AttemptState.RUNNING, route=route)
        executor_name = route.executor if route is not None else self.default_executor
        trace.get_current_span().set_attribute(telemetry.EXECUTOR, executor_name)
        if known is None:
            if stop is not None and stop.is_set():
                await self._settle(self._bus.abandon, message)  # not started: leave it for others
                return
            if await self._flow_cancelled(event):
                await self._cancel_run(message, record, "the flow was cancelled before it started")
                return
            metrics.JOBS_STARTED.labels(self.spec.name, executor_name).inc()
            waited = (record.started_at or self._clock.now()) - message.enqueued_at
            metrics.QUEUE_WAIT.labels(self.spec.name).observe(max(0.0, waited.total_seconds()))
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            request = JobRequest(
                job_id=job,
                attempt=attempt,
                event=event,
                spec=self._job_spec(route),
                working_dir=self.options.working_dir,
                backends=self.options.backends,
                labels={  # 2018's job labels, and Ion's
                    "ion/modulename": self.spec.name,
                    "ion/eventid": event.event_id,
                    "ion/parenteventid": event.context.parent_event_id,
                    "ion/correlationid": event.correlation_id,
                    "ion/messageid": message.message_id,
                    "ion/deliverycount": str(message.delivery_count),
                    "ion/attempt": str(attempt),
                },
                trace_context=carrier,
            )
            # The RUNNING record is written while the job prepares (submitted first, so a local
            # job starts before the write takes the event loop); both finish before either's
            # error is looked at, so it can never land after the final record written below.
            outcome = await asyncio.gather(
                executor.submit(request),
                self._meta.upsert_attempt(record),
                return_exceptions=True,
            )
            for failure in outcome:
                if isinstance(failure, BaseException):
                    raise failure
            failpoints.reach("dispatcher.submitted")
        else:
            self.stats.adopted += 1
            metrics.JOBS_ADOPTED.labels(self.spec.name).inc()
            log.info("adopting job %s (%s)", job, known.state)
            if known.started_at is not None:
                record = record.evolve(started_at=known.started_at)
        cancelled = asyncio.Event()
        try:
            result = await self._wait_watching(executor, job, event, stop, cancelled)
        except errors.NotFoundError:
            # Another handler of this message (a redelivery after a lost lock) finished the
            # job and cleaned it up meanwhile: settle by what it recorded.
            await self._settle_by_record(message, event, job, max_attempt)
            return
        failpoints.reach("dispatcher.job-finished")
        record = record.evolve(logs_ref=result.logs_ref, exit_code=result.exit_code)
        if cancelled.is_set() and result.state != JobState.SUCCEEDED:
            await self._cancel_run(message, record, "the flow was cancelled while it ran")
            return
        self._finished(record, result, executor_name)
        if result.state != JobState.SUCCEEDED:
            trace.get_current_span().set_status(Status(StatusCode.ERROR, result.reason[:200]))
            await self._fail(
                message, event, record, max_attempt, result.reason, exit_code=result.exit_code
            )
            return
        await self._meta.upsert_attempt(
            record.evolve(
                state=AttemptState.SUCCEEDED,
                finished_at=result.finished_at or self._clock.now(),
                outputs=result.outputs,
                child_event_ids=result.child_event_ids,
            )
        )
        self.stats.succeeded += 1
        failpoints.reach("dispatcher.recorded")
        log.info(
            "job succeeded: %d output(s), %d event(s)",
            len(result.outputs),
            len(result.child_event_ids),
        )
        if await self._settle(self._bus.complete, message):
            failpoints.reach("dispatcher.completed")
            await executor.delete(job)

    async def _flow_cancelled(self, event: Event) -> bool:
        """The event's flow was cancelled (`ion flow cancel`): nothing more of it may run."""
        try:
            return (await self._meta.get_flow_summary(event.correlation_id)).cancelled
        except errors.NotFoundError:
            return False  # no summary: a flow written before summaries existed
        except errors.TransientError as err:
            log.warning(
                "could not read whether flow %s is cancelled: %s", event.correlation_id, err
            )
            return False

    async def _wait_watching(
        self,
        executor: Executor,
        job: str,
        event: Event,
        stop: asyncio.Event | None,
        cancelled: asyncio.Event,
    ) -> JobResult:
        """Wait for the job's result, checking its flow every `cancel_poll`: once the flow is
        cancelled, set `cancelled` and cancel the job (again at each check until it ends)."""

        async def watch() -> None:
            while True:
                await self._clock.sleep(self.options.cancel_poll)
                if await self._flow_cancelled(event):
                    if not cancelled.is_set():
                        log.info("the flow was cancelled; cancelling job %s", job)
                    cancelled.set()
                    try:
                        await executor.cancel(job)
                    except errors.IonError as err:
                        log.warning("could not cancel job %s yet: %s", job, err)

        watcher = asyncio.create_task(watch())
        try:
            return await self._wait(executor, job, stop)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _cancel_run(self, message: ReceivedMessage, record: JobAttempt, reason: str) -> None:
        """Record the attempt CANCELLED and complete its message: nothing more runs for it."""
        await self._meta.upsert_attempt(
            record.evolve(
                state=AttemptState.CANCELLED, finished_at=self._clock.now(), reason=reason
            )
        )
        log.info("attempt cancelled: %s", reason)
        if await self._settle(self._bus.complete, message):
            await self._delete_job(record)

    def _finished(self, record: JobAttempt, result: JobResult, executor: str) -> None:
        """Count a finished attempt and its duration; mark the attempt's span with its outcome."""
        outcome = "succeeded" if result.state == JobState.SUCCEEDED else "failed"
        metrics.JOBS_FINISHED.labels(self.spec.name, executor, outcome).inc()
        finished = result.finished_at or self._clock.now()
        took = (finished - (record.started_at or finished)).total_seconds()
        metrics.JOB_DURATION.labels(self.spec.name, executor, outcome).observe(max(0.0, took))
        trace.get_current_span().set_attribute("ion.outcome", outcome)

    async def _decide(self, event: Event) -> routing.Decision:
        """Apply the module's rules to the event (reading only the facts they need)."""
        if not self.spec.has_rules:
            return routing.Decision(run=True)
        facts = await routing.event_facts(
            event, routing.needs_of(self.spec), meta=self._meta, blobs=self._blobs
        )
        return routing.decide(self.spec, facts, default_executor=self.default_executor)

    def _executor_for(self, route: RouteChoice | None) -> Executor:
        """The executor a route names (the default one without a route).

        Raises:
            errors.NotFoundError: this dispatcher holds no executor of that name.
        """
        if route is None:
            return self._executor
        try:
            return self._executors[route.executor]
        except KeyError:
            raise errors.NotFoundError(
                f"the route chose executor {route.executor!r}, which this dispatcher does not"
                f" hold (it has: {', '.join(sorted(self._executors))})",
                key=route.executor,
            ) from None

    def _attempt(
        self,
        event: Event,
        job: str,
        attempt: int,
        state: AttemptState,
        *,
        route: RouteChoice | None = None,
        reason: str = "",
    ) -> JobAttempt:
        """A record of this dispatcher's attempt at `event`, started now; one in a final state
        (anything but RUNNING) also finished now."""
        now = self._clock.now()
        return JobAttempt(
            id=job,
            module=self.spec.name,
            event_id=event.event_id,
            correlation_id=event.correlation_id,
            parent_event_id=event.context.parent_event_id,
            event_type=event.type,
            attempt=attempt,
            state=state,
            started_at=now,
            finished_at=None if state == AttemptState.RUNNING else now,
            reason=reason,
            dispatcher=self.identity,
            route=route,
        )

    def _job_spec(self, route: RouteChoice | None) -> ModuleSpec:
        """The spec a job is given: rules applied already, the route's resources in place."""
        spec = self.spec.without_rules()
        if route is not None and route.resources != spec.resources:
            spec = spec.model_copy(update={"resources": route.resources})
        return spec

    async def _filter(
        self, message: ReceivedMessage, event: Event, job: str, attempt: int, reason: str
    ) -> None:
        """Record that `when` did not match (FILTERED) and complete the message; nothing runs."""
        await self._meta.upsert_attempt(
            self._attempt(event, job, attempt, AttemptState.FILTERED, reason=reason)
        )
        self.stats.filtered += 1
        metrics.EVENTS_FILTERED.labels(self.spec.name).inc()
        trace.get_current_span().set_attribute("ion.outcome", "filtered")
        log.info("event filtered out: %s", reason)
        await self._settle(self._bus.complete, message)

    async def _unroutable(
        self,
        message: ReceivedMessage,
        event: Event,
        job: str,
        attempt: int,
        route: RouteChoice | None,
        reason: str,
    ) -> None:
        """A route to an executor this dispatcher lacks: dead-letter at once (no retry helps)."""
        record = self._attempt(
            event, job, attempt, AttemptState.DEAD_LETTERED, route=route, reason=reason
        )
        await self._meta.upsert_attempt(record)
        self.stats.dead_lettered += 1
        metrics.JOBS_DEAD_LETTERED.labels(self.spec.name, "Unroutable").inc()
        trace.get_current_span().set_status(Status(StatusCode.ERROR, "unroutable"))
        log.error("dead-lettering: %s", reason)
        await self._settle(
            self._bus.dead_letter, message, reason="Unroutable", description=reason[:1000]
        )

    async def _delete_job(self, record: JobAttempt) -> None:
        """Forget a finished job in the executor that ran it."""
        with contextlib.suppress(errors.NotFoundError):
            await self._executor_for(record.route).delete(record.id)

    async def _wait(self, executor: Executor, job: str, stop: asyncio.Event | None) -> JobResult:
        """Wait for the job's result; a backend that is down is waited out, never fatal."""
        delay = timedelta(seconds=0.5)
        while True:
            try:
                return await executor.wait(job)
            except errors.TransientError as err:
                if stop is not None and stop.is_set():
                    raise
                log.warning("job %s could not finish (%s); resuming in %s", job, err, delay)
                await self._clock.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    async def _settle_by_record(
        self, message: ReceivedMessage, event: Event, job: str, max_attempt: int
    ) -> None:
        record = await self._get_attempt(event, job)
        if record is not None and record.state == AttemptState.SUCCEEDED:
            log.info("job %s was finished by another handler; completing", job)
            await self._settle(self._bus.complete, message)
        elif record is not None and record.state in (
            AttemptState.FAILED,
            AttemptState.DEAD_LETTERED,
        ):
            await self._after_failure(message, event, record, max_attempt)
        else:
            raise errors.TransientError(f"job {job} vanished before its result was recorded")

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
            retry = attempts.next_attempt_message(
                body=message.body,
                properties=message.properties,
                message_id=attempts.retry_message_id(
                    event.event_id, self.spec.name, record.attempt + 1
                ),
                attempt=record.attempt + 1,
                max_attempt=max_attempt,
                subscription=self.subscription,
                scheduled_at=self._clock.now() + delay,
            )
            # Publish the retry before completing: a crash in between duplicates the retry
            # message, which duplicate detection (same message id) then drops.
            await self._bus.publish(self.topic, [retry])
            metrics.JOBS_RETRIED.labels(self.spec.name).inc()
            log.info("retrying as attempt %d in %s", record.attempt + 1, delay)
            if await self._settle(self._bus.complete, message):
                await self._delete_job(record)
            return
        self.stats.dead_lettered += 1
        metrics.JOBS_DEAD_LETTERED.labels(self.spec.name, "ModuleFailed").inc()
        description = f"{record.reason[:800]}; logs: {record.logs_ref or 'none'}"
        log.error("giving up after %d attempt(s); dead-lettering: %s", record.attempt, description)
        if await self._settle(
            self._bus.dead_letter, message, reason="ModuleFailed", description=description[:1000]
        ):
            await self._delete_job(record)
