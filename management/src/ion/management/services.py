"""The gRPC servicers: ModuleService (2018 paths) and ion.v1 events and dead letters (the 2018
TraceService is `ion.management.flows.TraceService`).

Servicers are thin: they convert messages, call the registry or the platform, and map Ion's
error types to status codes in one place (`_rpc`): ValidationError → INVALID_ARGUMENT (with the
field in the `ion-field` trailer and the rule in `ion-rule`), NotFoundError → NOT_FOUND, ConflictError → ALREADY_EXISTS,
ConfigError and PreconditionError → FAILED_PRECONDITION, TransientError → UNAVAILABLE,
anything else → INTERNAL.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information

from ion.core import AttemptState, ModuleRecord, errors, identifiers
from ion.management import convert, deadletters, flows
from ion.management.control import RootFile
from ion.management.dataplane import Platform
from ion.management.deployers import Runtime
from ion.management.registry import (
    DRAIN_SECONDS,
    Deleted,
    ModuleRegistry,
    state_of,
    subscription_of,
)
from ion.proto import module_pb2, module_pb2_grpc
from ion.proto.v1 import events_pb2, events_pb2_grpc, types_pb2

log = logging.getLogger(__name__)

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

MAX_WAIT_SECONDS = 600.0
"""Longest a GetFlow call waits for its flow to settle."""
MAX_PEEK = 1000

_CODES: list[tuple[type[errors.IonError], Any]] = [
    (errors.ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.ConflictError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.TransientError, grpc.StatusCode.UNAVAILABLE),
]


def _rpc(
    method: Callable[[S, Req, Any], Awaitable[Resp]],
) -> Callable[[S, Req, Any], Awaitable[Resp]]:
    """Map Ion errors raised by a servicer method to gRPC status codes."""

    @functools.wraps(method)
    async def wrapper(self: S, request: Req, context: Any) -> Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as err:
            await _abort(context, err, method.__qualname__)
            raise  # unreachable: abort raises

    return wrapper


async def _abort(context: Any, err: Exception, where: str) -> None:
    """Abort the call with the status code of an Ion error (INTERNAL for anything else)."""
    if isinstance(err, errors.IonError):
        code = next((c for kind, c in _CODES if isinstance(err, kind)), grpc.StatusCode.INTERNAL)
        if isinstance(err, errors.ValidationError) and (err.field or err.rule):
            trailers = (("ion-field", err.field), ("ion-rule", err.rule))
            context.set_trailing_metadata(tuple((k, v) for k, v in trailers if v))
        await context.abort(code, str(err))
    log.exception("%s failed", where)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}: {err}")


def _delete_reply(done: Deleted) -> module_pb2.ModuleDeleteResponse:
    record = done.record
    if done.already_deleted:
        summary = f"module {record.id} was deleted already"
    else:
        summary = f"deleted module {record.id}"
        parts = []
        if done.drained:
            parts.append(f"{done.drained} running job(s) finished first")
        if done.cancelled:
            parts.append(f"{done.cancelled} run(s) cancelled")
        if done.dead_lettered:
            parts.append(
                f"{done.dead_lettered} event(s) kept as dead letters"
                f" (`ion event dlq list --module {record.id}`)"
            )
        if parts:
            summary += ": " + ", ".join(parts)
    return module_pb2.ModuleDeleteResponse(
        name=record.id,
        done=True,
        message=summary,
        queued=done.queued,
        running=done.running,
        drained=done.drained,
        cancelled=done.cancelled,
        dead_lettered=done.dead_lettered,
        already_deleted=done.already_deleted,
    )


class ModuleService(module_pb2_grpc.ModuleServiceServicer):
    """The 2018 ModuleService over the registry."""

    def __init__(self, registry: ModuleRegistry) -> None:
        self._registry = registry
        self._infos: dict[tuple[str, str, str], types_pb2.ModuleInfo] = {}

    def _info(self, record: ModuleRecord, runtime: Runtime) -> types_pb2.ModuleInfo:
        # Converting a record is most of List's cost; a record's etag changes on every write.
        key = (record.id, record.etag, state_of(record, runtime))
        info = self._infos.get(key)
        if info is None:
            if len(self._infos) > 10_000:
                self._infos.clear()
            info = self._infos[key] = convert.module_info(record, runtime)
        return info

    @_rpc
    async def Create(
        self, request: module_pb2.ModuleCreateRequest, context: Any
    ) -> module_pb2.ModuleCreateResponse:
        """Validate and store a module, then start its dispatchers."""
        spec = convert.spec_from_request(request)
        record = await self._registry.create(spec, provider=request.provider.strip())
        return module_pb2.ModuleCreateResponse(name=record.id)

    @_rpc
    async def Apply(
        self, request: module_pb2.ModuleApplyRequest, context: Any
    ) -> module_pb2.ModuleApplyResponse:
        """Create the module or update the live one of that name in place (or say so)."""
        spec = convert.spec_from_request(request.module)
        done = await self._registry.apply(
            spec, provider=request.module.provider.strip(), dry_run=request.dry_run
        )
        return module_pb2.ModuleApplyResponse(
            name=done.record.id if done.record else "",
            action=done.action,
            changed=list(done.changed),
        )

    @_rpc
    async def Delete(
        self, request: module_pb2.ModuleDeleteRequest, context: Any
    ) -> module_pb2.ModuleDeleteResponse:
        """Drain and delete a module (see `ModuleRegistry.delete`)."""
        done = await self._registry.delete(
            request.name.strip(),
            force=request.force,
            timeout=request.timeout_seconds or DRAIN_SECONDS,
            dry_run=request.dry_run,
        )
        return _delete_reply(done)

    async def DeleteStream(
        self, request: module_pb2.ModuleDeleteRequest, context: Any
    ) -> AsyncIterator[module_pb2.ModuleDeleteResponse]:
        """Drain and delete a module, streaming a line of progress about once a second."""
        lines: asyncio.Queue[str] = asyncio.Queue()
        name = request.name.strip()
        task = asyncio.create_task(
            self._registry.delete(
                name,
                force=request.force,
                timeout=request.timeout_seconds or DRAIN_SECONDS,
                dry_run=request.dry_run,
                on_progress=lines.put_nowait,
            )
        )
        try:
            while not task.done():
                waiter = asyncio.ensure_future(lines.get())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if waiter.done():
                    yield module_pb2.ModuleDeleteResponse(name=name, message=waiter.result())
                else:
                    waiter.cancel()
            while not lines.empty():
                yield module_pb2.ModuleDeleteResponse(name=name, message=lines.get_nowait())
            try:
                done = task.result()
            except Exception as err:
                await _abort(context, err, "ModuleService.DeleteStream")
                raise  # unreachable: abort raises
            yield _delete_reply(done)
        finally:
            if not task.done():
                # The client went away: the delete goes on (it must not stop half-way).
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    @_rpc
    async def Get(
        self, request: module_pb2.ModuleGetRequest, context: Any
    ) -> module_pb2.ModuleGetResponse:
        """Return a module's status and counts."""
        record = await self._registry.resolve(request.name.strip())
        status = await self._registry.status(record)
        return module_pb2.ModuleGetResponse(
            name=record.id,
            status=status.state,
            statusMessage=status.message,
            dispatchers_running=status.runtime.dispatchers_running,
            jobs_in_flight=status.runtime.jobs_in_flight,
            succeeded=status.attempts[AttemptState.SUCCEEDED],
            failed=status.failed,
            dead_lettered=status.attempts[AttemptState.DEAD_LETTERED],
            running=status.attempts[AttemptState.RUNNING],
            cancelled=status.attempts[AttemptState.CANCELLED],
            module=convert.module_info(record, status.runtime),
            queued=status.queued,
            dead_letter_queue=status.dead_letter_queue,
        )

    @_rpc
    async def List(
        self, request: module_pb2.ModuleListRequest, context: Any
    ) -> module_pb2.ModuleListResponse:
        """Return module ids (2018) and their details."""
        records = await self._registry.list_modules(include_deleted=request.include_deleted)
        infos = [self._info(r, await self._registry.runtime(r)) for r in records]
        return module_pb2.ModuleListResponse(names=[r.id for r in records], modules=infos)


class EventService(events_pb2_grpc.EventServiceServicer):
    """Raise root events, read events and peek subscriptions."""

    def __init__(self, platform: Platform, registry: ModuleRegistry) -> None:
        self._platform = platform
        self._registry = registry

    @_rpc
    async def Publish(
        self, request: events_pb2.PublishEventRequest, context: Any
    ) -> events_pb2.PublishEventResponse:
        """Raise a root event with data and files."""
        # The rules of ion.core.identifiers, as for the front API and the bus reader; a broken
        # one is INVALID_ARGUMENT with the field in the `ion-field` trailer.
        event_type = request.event_type.strip()
        correlation_id = request.correlation_id.strip() or None
        pairs = [(kv.key, kv.value) for kv in request.data]
        identifiers.check_root_request(
            event_type,
            data=pairs,
            correlation_id=correlation_id,
            file_names=[f.name for f in request.files],
        )
        data = dict(pairs)
        # The request holds the files already: each goes to the blob store as it is.
        files = [RootFile(f.name, _one_chunk(f.content)) for f in request.files]
        event = await self._platform.raise_event(
            event_type, data=data, files=files, correlation_id=correlation_id
        )
        log.info(
            "raised %s",
            event_type,
            extra={"event_id": event.event_id, "correlation_id": event.correlation_id},
        )
        return events_pb2.PublishEventResponse(
            event=convert.event_info(event), event_json=event.to_json().decode()
        )

    @_rpc
    async def Get(
        self, request: events_pb2.GetEventRequest, context: Any
    ) -> events_pb2.GetEventResponse:
        """Return an event's metadata document."""
        if not request.event_id.strip():
            raise errors.ValidationError(
                "field 'event_id' is required", field="event_id", rule="required"
            )
        event_id = identifiers.check_id(request.event_id.strip(), field="event_id")
        correlation_id = identifiers.check_id(
            request.correlation_id.strip(), field="correlation_id", allow_empty=True
        )
        meta = await flows.resolve_event(self._platform.meta, event_id, correlation_id)
        return events_pb2.GetEventResponse(
            event=convert.meta_event_info(meta),
            files=meta.files,
            data=[types_pb2.KeyValue(key=p.key, value=p.value) for p in meta.data],
            files_prefix=meta.files_prefix,
            event_meta_json=json.dumps(meta.to_document(), indent=2, ensure_ascii=False),
        )

    @_rpc
    async def Peek(self, request: events_pb2.PeekRequest, context: Any) -> events_pb2.PeekResponse:
        """Return messages of a subscription (or its dead-letter queue) without locking them."""
        if request.module.strip():
            record = await self._registry.resolve(request.module.strip())
            topic, subscription = subscription_of(record)
        elif request.event_type.strip() and request.subscription.strip():
            topic, subscription = request.event_type.strip(), request.subscription.strip()
        else:
            raise errors.ValidationError(
                "name a module, or both event_type and subscription", field="module"
            )
        count = min(request.max_messages or 10, MAX_PEEK)
        messages = await self._platform.bus.peek(
            topic, subscription, max_messages=count, dead_letter=request.dead_letter
        )
        return events_pb2.PeekResponse(
            messages=[
                convert.bus_message(m, topic=topic, subscription=subscription) for m in messages
            ]
        )


class DeadLetterService(events_pb2_grpc.DeadLetterServiceServicer):
    """List dead-lettered messages with their reasons and replay them (`ion.management.deadletters`)."""

    def __init__(self, platform: Platform, registry: ModuleRegistry) -> None:
        self._platform = platform
        self._registry = registry

    @_rpc
    async def List(
        self, request: events_pb2.ListDeadLettersRequest, context: Any
    ) -> events_pb2.ListDeadLettersResponse:
        """Return each module's dead-lettered messages, oldest first."""
        letters = await deadletters.list_dead_letters(
            self._platform,
            self._registry,
            request.module.strip(),
            max_messages=request.max_messages,
        )
        found: list[events_pb2.DeadLetter] = []
        for letter in letters:
            item = events_pb2.DeadLetter(
                module=letter.module.id,
                message=convert.bus_message(
                    letter.message, topic=letter.topic, subscription=letter.subscription
                ),
            )
            if letter.event is not None:
                item.event.CopyFrom(convert.event_info(letter.event))
            found.append(item)
        return events_pb2.ListDeadLettersResponse(dead_letters=found)

    @_rpc
    async def Replay(
        self, request: events_pb2.ReplayDeadLetterRequest, context: Any
    ) -> events_pb2.ReplayDeadLetterResponse:
        """Put one dead-lettered message back on its module's subscription."""
        record = await deadletters.replay_dead_letter(
            self._platform, self._registry, request.module, request.message_id
        )
        return events_pb2.ReplayDeadLetterResponse(
            module=record.id, message_id=request.message_id.strip()
        )


async def _one_chunk(content: bytes) -> AsyncIterator[bytes]:
    yield content
