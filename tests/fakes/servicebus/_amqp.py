"""The AMQP 1.0 side of the fake: a python-qpid-proton handler that speaks Service Bus.

It runs on the reactor thread of ``FakeServiceBus``. Every callback that touches broker state
holds ``Namespace.lock``. Wire behaviour copied from the service (and checked against
azure-servicebus 7.15's pyamqp transport):

- SASL ANONYMOUS (and PLAIN); ``$cbs`` put-token is answered with ``status-code`` 202.
- ``<entity>/$management`` request/response: the reply goes out on *our* sender link whose source
  is the same node, with ``correlation-id`` = request ``message-id`` and ``statusCode``.
- Receive links on subscriptions / dead-letter queues deliver with delivery tag = lock token
  (``uuid.bytes_le``, which is how the SDK derives ``lock_token``); peek-lock settlement may come
  as link dispositions (accepted / modified / rejected / released), which are answered with a
  settled disposition echoing the outcome (the SDK waits for that echo), or via
  ``com.microsoft:update-disposition`` on the management node.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from azure.servicebus._pyamqp._decode import decode_payload
from proton import (
    UNDESCRIBED,
    Array,
    Condition,
    Connection,
    Data,
    Delivery,
    Endpoint,
    Link,
    Message,
    Receiver,
    Sender,
    symbol,
    timestamp,
)
from proton.handlers import EndpointStateHandler, MessagingHandler

from . import _model
from ._model import (
    EntityNotFound,
    FakeServiceBusError,
    LockLost,
    MessageNotFound,
    MessageQueue,
    Namespace,
    NotAllowed,
    StoredMessage,
    Topic,
)

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 256 * 1024  # Standard tier
INCOMING_CREDIT = 500
LOCK_LOST = "com.microsoft:message-lock-lost"
MESSAGE_NOT_FOUND = "com.microsoft:message-not-found"
DEAD_LETTER = "com.microsoft:dead-letter"
SESSION_FILTER = "com.microsoft:session-filter"


@dataclass(eq=False)
class Consumer:
    """One receive link attached to a subscription or dead-letter queue."""

    link: Sender
    queue: MessageQueue
    receive_and_delete: bool


@dataclass(frozen=True)
class _Role:
    kind: str  # "cbs" | "management" | "topic" | "reply" | "consumer"
    address: str
    topic: Topic | None = None
    queue: MessageQueue | None = None


def _guarded(method: Callable[..., None]) -> Callable[..., None]:
    """Keep the reactor alive on a bug in the fake: log it and record it in ``errors``."""

    @functools.wraps(method)
    def wrapper(self: AmqpBroker, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as err:
            log.exception("fake servicebus: %s failed", method.__name__)
            self.errors.append(err)

    return wrapper


class AmqpBroker(MessagingHandler):
    """Proton handler implementing the subset of Service Bus the Ion tests need."""

    def __init__(self, namespace: Namespace, clock: Callable[[], float] = time.time) -> None:
        super().__init__(prefetch=0, auto_accept=False, auto_settle=False)
        # Keep only the endpoint open/close choreography; deliveries are handled here.
        self.handlers = [
            h for h in cast(list[Any], self.handlers) if isinstance(h, EndpointStateHandler)
        ]
        self.namespace = namespace
        self.clock = clock
        self.consumers: list[Consumer] = []
        self.producers: list[tuple[Receiver, Topic]] = []
        """Links sending to a topic, detached with amqp:not-found when the topic is deleted."""
        self.connections: set[Connection] = set()
        self._rotation = 0
        self.errors: list[BaseException] = []
        """Exceptions raised inside the fake (bugs); tests should assert it stays empty."""

    # -- connection level ----------------------------------------------------------------

    @_guarded
    def on_connection_bound(self, event: Any) -> None:
        sasl = event.transport.sasl()
        sasl.allow_insecure_mechs = True
        sasl.allowed_mechs("ANONYMOUS PLAIN")
        self.connections.add(event.connection)

    @_guarded
    def on_transport_closed(self, event: Any) -> None:
        connection = event.connection
        if connection is not None:
            self.connections.discard(connection)
            self._forget_connection(connection)

    @_guarded
    def on_connection_closed(self, event: Any) -> None:
        self._forget_connection(event.connection)

    def on_connection_error(self, event: Any) -> None:
        self._forget_connection(event.connection)

    def on_session_error(self, event: Any) -> None:
        event.session.close()

    @_guarded
    def on_link_error(self, event: Any) -> None:
        self._forget_link(event.link)

    @_guarded
    def on_link_closing(self, event: Any) -> None:
        self._forget_link(event.link)

    @_guarded
    def on_link_closed(self, event: Any) -> None:
        self._forget_link(event.link)

    def on_transport_error(self, event: Any) -> None:
        log.debug("fake servicebus transport error: %s", event.transport.condition)

    def _forget_connection(self, connection: Connection) -> None:
        self.consumers = [c for c in self.consumers if c.link.connection != connection]
        self.producers = [p for p in self.producers if p[0].connection != connection]

    def _forget_link(self, link: Link) -> None:
        # Locks stay held until they expire or are settled through $management, like the service.
        self.consumers = [c for c in self.consumers if c.link != link]
        self.producers = [p for p in self.producers if p[0] != link]

    # -- attach -------------------------------------------------------------------------

    @_guarded
    def on_link_remote_open(self, event: Any) -> None:
        # Runs before the EndpointStateHandler child, which then sees the link already open
        # (or closed) and leaves it alone.
        link: Link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        terminus = link.remote_target if link.is_receiver else link.remote_source
        address = _model.normalise_address(terminus.address)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        try:
            with self.namespace.lock:
                role = self._route(link, address)
        except FakeServiceBusError as err:
            # Like the service: attach, then detach at once with the error.
            link.open()
            link.condition = _condition_for(err)
            link.close()
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.fake_role = role
        if link.is_receiver:
            link.max_message_size = MAX_MESSAGE_SIZE
        link.open()
        if link.is_receiver:
            link.flow(INCOMING_CREDIT)
            if role.kind == "topic" and role.topic is not None:
                self.producers.append((cast(Receiver, link), role.topic))
        elif role.kind == "reply":
            replies: dict[str, Sender] = getattr(link.connection, "fake_replies", None) or {}
            replies[role.address] = cast(Sender, link)
            link.connection.fake_replies = replies
        elif role.kind == "consumer":
            assert role.queue is not None
            self.consumers.append(
                Consumer(
                    link=cast(Sender, link),
                    queue=role.queue,
                    receive_and_delete=link.remote_snd_settle_mode == Link.SND_SETTLED,
                )
            )

    def _route(self, link: Link, address: str) -> _Role:
        if address == "$cbs":
            return _Role("cbs" if link.is_receiver else "reply", address)
        resolved = self.namespace.resolve(address)
        if resolved.management:
            return _Role(
                "management" if link.is_receiver else "reply",
                address,
                topic=resolved.topic,
                queue=resolved.queue,
            )
        if link.is_receiver:
            if resolved.queue is not None:
                raise NotAllowed(f"cannot send to {address!r}: send to the topic instead")
            return _Role("topic", address, topic=resolved.topic)
        if resolved.queue is None:
            raise NotAllowed(f"cannot receive from topic {address!r}: use a subscription")
        filters = link.remote_source.filter
        if filters is not None and SESSION_FILTER in (filters.get_object() or {}):
            raise NotAllowed("sessions are not supported by the fake")
        return _Role("consumer", address, topic=resolved.topic, queue=resolved.queue)

    # -- deliveries ---------------------------------------------------------------------

    @_guarded
    def on_link_flow(self, event: Any) -> None:
        if event.link.is_sender:
            self.dispatch()

    @_guarded
    def on_delivery(self, event: Any) -> None:
        delivery: Delivery = event.delivery
        if delivery.link.is_receiver:
            self._incoming(delivery)
        else:
            self._outcome(delivery)

    def _incoming(self, delivery: Delivery) -> None:
        link = cast(Receiver, delivery.link)
        if delivery.aborted:
            delivery.settle()
            return
        if not delivery.readable or delivery.partial:
            return
        raw = link.recv(delivery.pending) or b""
        link.advance()
        if link.credit < INCOMING_CREDIT // 2:
            link.flow(INCOMING_CREDIT - link.credit)
        role: _Role | None = getattr(link, "fake_role", None)
        try:
            with self.namespace.lock:
                if role is None:
                    raise NotAllowed("link was not attached")
                if role.kind == "topic":
                    assert role.topic is not None
                    if role.topic.deleted:
                        raise EntityNotFound(f"topic {role.topic.name} was deleted")
                    now = self.clock()
                    for one in split_batch(raw):
                        role.topic.publish(one, now)
                elif role.kind == "cbs":
                    self._reply(link.connection, role.address, self._cbs(raw))
                elif role.kind == "management":
                    self._reply(link.connection, role.address, self._management(role, raw))
        except FakeServiceBusError as err:
            delivery.local.condition = _condition_for(err)
            delivery.update(Delivery.REJECTED)
        else:
            delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        self.dispatch()

    def _reply(self, connection: Connection, address: str, reply: Message) -> None:
        replies: dict[str, Sender] = getattr(connection, "fake_replies", None) or {}
        link = replies.get(address)
        if link is None:
            log.warning("fake servicebus: no reply link for %s", address)
            return
        reply.send(link, tag=uuid.uuid4().bytes)  # type: ignore[arg-type]  # stub says str; proton takes bytes

    def _outcome(self, delivery: Delivery) -> None:
        """A client settled (or disposed of) a message we delivered."""
        if not delivery.updated and not delivery.remote_state:
            return
        link = delivery.link
        token: uuid.UUID | None = getattr(delivery, "fake_token", None)
        queue = self._queue_of(link)
        state = delivery.remote_state
        remote = delivery.remote
        now = self.clock()
        reply_state: Any = state
        try:
            with self.namespace.lock:
                if queue is None or token is None:
                    raise LockLost("delivery is unknown")
                if state == Delivery.ACCEPTED:
                    queue.complete(token, now)
                elif state == Delivery.REJECTED:
                    reason, description = _dead_letter_details(remote.condition)
                    queue.dead_letter_locked(token, now, reason, description)
                elif state == Delivery.MODIFIED:
                    if remote.undeliverable:
                        raise NotAllowed("defer is not supported by the fake")
                    if remote.failed:
                        queue.abandon(token, now)
                    else:
                        queue.release(token, now)
                    delivery.local.failed = remote.failed
                    delivery.local.undeliverable = remote.undeliverable
                else:  # released, or settled without an outcome
                    queue.release(token, now)
                    reply_state = Delivery.RELEASED
        except FakeServiceBusError as err:
            delivery.local.condition = _condition_for(err)
            reply_state = Delivery.REJECTED
        if reply_state:
            delivery.update(reply_state)
        delivery.settle()
        self.dispatch()

    def _queue_of(self, link: Link) -> MessageQueue | None:
        role: _Role | None = getattr(link, "fake_role", None)
        return role.queue if role is not None else None

    # -- sending to consumers -----------------------------------------------------------

    def dispatch(self) -> None:
        """Hand available messages to consumers with credit, round-robin per queue."""
        now = self.clock()
        with self.namespace.lock:
            for consumer in list(self.consumers):
                if consumer.queue.deleted:
                    self._detach(consumer, EntityNotFound(f"{consumer.queue.path} was deleted"))
            live = [c for c in self.consumers if _active(c.link)]
            if not live:
                return
            self._rotation += 1
            offset = self._rotation % len(live)
            live = live[offset:] + live[:offset]
            progress = True
            while progress:
                progress = False
                for consumer in live:
                    if consumer.link.credit <= 0:
                        continue
                    stored = consumer.queue.acquire(now, delete=consumer.receive_and_delete)
                    if stored is None:
                        continue
                    self._send(consumer, stored)
                    progress = True
            for consumer in live:
                if consumer.link.drain_mode and consumer.link.credit > 0:
                    consumer.link.drained()

    def _send(self, consumer: Consumer, stored: StoredMessage) -> None:
        token = stored.lock_token
        tag = token.bytes_le if token is not None else uuid.uuid4().bytes
        message = encode_for_delivery(stored)
        link = consumer.link
        dlv = link.delivery(tag)  # type: ignore[arg-type]  # stub says str; proton takes bytes
        link.stream(message)
        link.advance()
        if consumer.receive_and_delete:
            dlv.settle()
        else:
            dlv.fake_token = token

    def _detach(self, consumer: Consumer, err: FakeServiceBusError) -> None:
        self.consumers.remove(consumer)
        if consumer.link.state & Endpoint.LOCAL_ACTIVE:
            consumer.link.condition = _condition_for(err)
            consumer.link.close()

    @_guarded
    def tick(self) -> None:
        """Periodic work on the reactor thread: schedules, lock expiry, TTL, delivery."""
        with self.namespace.lock:
            self.namespace.tick(self.clock())
            for link, topic in list(self.producers):
                if topic.deleted:
                    self.producers.remove((link, topic))
                    if link.state & Endpoint.LOCAL_ACTIVE:
                        link.condition = _condition_for(
                            EntityNotFound(f"topic {topic.name} was deleted")
                        )
                        link.close()
        self.dispatch()

    def close_all(self) -> None:
        for connection in list(self.connections):
            if connection.state & Endpoint.LOCAL_ACTIVE:
                connection.close()

    # -- $cbs ------------------------------------------------------------------------------

    def _cbs(self, raw: bytes) -> Message:
        """put-token: any token is fine, but the audience must name an existing entity."""
        request = Message()
        request.decode(raw)
        properties: dict[Any, Any] = dict(request.properties or {})
        audience = str(properties.get("name", ""))
        path = _model.normalise_address(audience)
        status, description = 202, "Accepted"
        if path:
            try:
                self.namespace.resolve(path)
            except FakeServiceBusError:
                status = 404
                description = f"The messaging entity '{audience}' could not be found."
        return Message(
            address=request.reply_to,
            correlation_id=request.id,
            properties={"status-code": status, "status-description": description},
        )

    # -- $management ----------------------------------------------------------------------

    def _management(self, role: _Role, raw: bytes) -> Message:
        request = Message()
        request.decode(raw)
        properties: dict[Any, Any] = dict(request.properties or {})
        operation = str(properties.get("operation", ""))
        body = request.body if isinstance(request.body, dict) else {}
        now = self.clock()
        try:
            value, status = self._operation(role, operation, body, now)
        except LockLost as err:
            return _mgmt_reply(request, 410, str(err), condition=LOCK_LOST)
        except MessageNotFound as err:
            return _mgmt_reply(request, 404, str(err), condition=MESSAGE_NOT_FOUND)
        except EntityNotFound as err:
            return _mgmt_reply(request, 404, str(err), condition="amqp:not-found")
        except NotAllowed as err:
            return _mgmt_reply(request, 400, str(err), condition="amqp:not-allowed")
        return _mgmt_reply(request, status, "OK" if status == 200 else "No Content", value=value)

    def _operation(
        self, role: _Role, operation: str, body: dict[Any, Any], now: float
    ) -> tuple[dict[str, Any] | None, int]:
        queue = role.queue
        topic = role.topic
        if (topic is not None and topic.deleted) or (queue is not None and queue.deleted):
            raise EntityNotFound(f"{role.address} was deleted")
        if operation == "com.microsoft:schedule-message":
            if topic is None or queue is not None:
                raise NotAllowed("schedule messages through the topic")
            numbers: list[int] = []
            for item in body.get("messages", []):
                sequence_number = topic.publish(bytes(item["message"]), now)
                numbers.append(sequence_number if sequence_number is not None else -1)
            return {"sequence-numbers": _array(Data.LONG, numbers)}, 200
        if operation == "com.microsoft:cancel-scheduled-message":
            if topic is None or queue is not None:
                raise NotAllowed("cancel scheduled messages through the topic")
            for number in _elements(body.get("sequence-numbers")):
                topic.cancel_scheduled(int(number))
            return {}, 200
        if queue is None:
            raise NotAllowed(f"operation {operation!r} needs a subscription")
        if operation == "com.microsoft:update-disposition":
            status = str(body.get("disposition-status", ""))
            for token in _elements(body.get("lock-tokens")):
                token = _as_uuid(token)
                if status == "completed":
                    queue.complete(token, now)
                elif status == "abandoned":
                    queue.abandon(token, now)
                elif status == "suspended":
                    reason = body.get("deadletter-reason")
                    description = body.get("deadletter-description")
                    queue.dead_letter_locked(
                        token,
                        now,
                        None if reason is None else str(reason),
                        None if description is None else str(description),
                    )
                else:
                    raise NotAllowed(f"disposition {status!r} is not supported by the fake")
            return {}, 200
        if operation == "com.microsoft:renew-lock":
            expirations = [
                timestamp(int(queue.renew(_as_uuid(t), now) * 1000))
                for t in _elements(body.get("lock-tokens"))
            ]
            return {"expirations": _array(Data.TIMESTAMP, expirations)}, 200
        if operation == "com.microsoft:peek-message":
            start = int(body.get("from-sequence-number", 1))
            count = int(body.get("message-count", 1))
            found = queue.peek(start, count)
            if not found:
                return None, 204
            return {"messages": [{"message": encode_for_delivery(m)} for m in found]}, 200
        raise NotAllowed(f"operation {operation!r} is not supported by the fake")


# -- helpers ------------------------------------------------------------------------------


def _active(link: Link) -> bool:
    both = Endpoint.LOCAL_ACTIVE | Endpoint.REMOTE_ACTIVE
    return bool((link.state & both) == both)


def _array(kind: int, values: list[Any]) -> Array:
    return Array(cast(Any, UNDESCRIBED), kind, *values)


def _elements(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Array):
        return list(value.elements)
    return list(value)


def _as_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes) and len(value) == 16:
        return uuid.UUID(bytes=value)
    return uuid.UUID(str(value))


def _condition_for(err: FakeServiceBusError) -> Condition:
    # The service always sends the info map (a tracking id); azure-servicebus 7.15 indexes
    # into it and hangs a send whose rejection has none.
    info: Any = {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())}
    if isinstance(err, LockLost):
        return Condition(LOCK_LOST, str(err), info)
    if isinstance(err, MessageNotFound):
        return Condition(MESSAGE_NOT_FOUND, str(err), info)
    if isinstance(err, EntityNotFound):
        return Condition("amqp:not-found", str(err), info)
    return Condition("amqp:not-allowed", str(err), info)


def _dead_letter_details(condition: Condition | None) -> tuple[str | None, str | None]:
    if condition is None:
        return None, None
    info: dict[Any, Any] = condition.info if isinstance(condition.info, dict) else {}
    reason = info.get("DeadLetterReason")
    description = info.get("DeadLetterErrorDescription", condition.description)
    return (
        None if reason is None else str(reason),
        None if description is None else str(description),
    )


def _mgmt_reply(
    request: Message,
    status: int,
    description: str,
    *,
    value: dict[str, Any] | None = None,
    condition: str | None = None,
) -> Message:
    properties: dict[str, Any] = {"statusCode": status, "statusDescription": description}
    if condition is not None:
        properties["errorCondition"] = symbol(condition)
    return Message(
        address=request.reply_to,
        correlation_id=request.id,
        properties=properties,
        body=value if value is not None else {},
    )


def split_batch(raw: bytes) -> list[bytes]:
    """Split an SDK batch transfer into its messages.

    The batch message format (0x80013700) is on the transfer frame, which proton's Python API
    does not expose. The SDK's batch envelope carries the first message's properties plus one
    ``data`` section per message, each an encoded AMQP message; a payload whose ``data``
    sections all look like encoded messages is treated as a batch.
    """
    try:
        decoded = decode_payload(memoryview(raw))
    except Exception:  # not ours to validate: store as sent
        return [raw]
    if not decoded.data or decoded.sequence or decoded.value is not None:
        return [raw]
    parts = [bytes(d) for d in decoded.data]
    if all(len(p) > 3 and p[0] == 0 and p[1] == 0x53 and 0x70 <= p[2] <= 0x78 for p in parts):
        return parts
    return [raw]


def encode_for_delivery(stored: StoredMessage) -> bytes:
    """The stored message with the broker's annotations, as the service would send it."""
    message = Message()
    message.decode(stored.raw)
    annotations = dict(message.annotations or {})
    annotations[symbol("x-opt-sequence-number")] = stored.sequence_number
    annotations[symbol("x-opt-enqueued-time")] = timestamp(int(stored.enqueued_time * 1000))
    if stored.lock_token is not None and stored.locked_until is not None:
        annotations[symbol("x-opt-locked-until")] = timestamp(int(stored.locked_until * 1000))
        message.instructions = {symbol("x-opt-lock-token"): stored.lock_token}  # type: ignore[dict-item]  # proton encodes UUIDs
    message.annotations = annotations
    if stored.extra_properties:
        properties: dict[Any, Any] = dict(message.properties or {})
        properties.update(stored.extra_properties)
        message.properties = properties  # type: ignore[assignment]  # stub types the setter as None
    header = _header(message, stored.delivery_count)
    # proton omits a header whose fields are defaults; the service always sends one with an
    # explicit delivery-count (the SDK reports None otherwise), so it is encoded by hand.
    message.durable = False
    message.priority = 4
    message.ttl = 0
    message.first_acquirer = False
    message.delivery_count = 0
    return header + b"".join(_sections(message.encode(), skip=0x70))


def _sections(encoded: bytes, *, skip: int) -> list[bytes]:
    """Split an encoded message into its sections, leaving out the one with descriptor ``skip``."""
    out: list[bytes] = []
    view = encoded
    while view:
        data = Data()
        consumed = data.decode(view)
        data.rewind()
        data.next()
        data.enter()
        data.next()
        if data.get_object() != skip:
            out.append(view[:consumed])
        view = view[consumed:]
    return out


def _header(message: Message, delivery_count: int) -> bytes:
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(0x70)
    data.put_list()
    data.enter()
    data.put_bool(True)  # durable
    data.put_ubyte(int(message.priority))
    if message.ttl:
        data.put_uint(int(message.ttl * 1000))
    else:
        data.put_null()
    data.put_bool(delivery_count == 0)  # first-acquirer
    data.put_uint(delivery_count)
    data.exit()
    data.exit()
    return bytes(data.encode())
