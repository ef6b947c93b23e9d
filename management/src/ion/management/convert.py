"""Conversions between protobuf messages and Ion's models, at the gRPC edge only.

A create request becomes a validated `ModuleSpec`; a validation error names the field as the
client sent it (`modulename`, `eventsubscriptions`, `handlerimage`, `tolerations.0.key` ...), not
as Ion stores it; `module_info` gives every spec field back, so Get and List show what Create
stored. A flow
(`ion.core.flow.Flow`) becomes the `ion.v1.Flow` tree field by field; the CLI turns it back
(`ion.cli.flows`), and a test holds the two to a lossless round trip.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ion.core import (
    Event,
    EventMeta,
    FlowDocument,
    ModuleRecord,
    ModuleSpec,
    Route,
    RouteChoice,
    Toleration,
    errors,
)
from ion.core.flow import Flow, FlowAttempt, FlowEvent, FlowModuleRun
from ion.core.ports import PeekedMessage
from ion.management.deployers import Runtime
from ion.management.registry import state_of, subscription_of
from ion.proto import module_pb2
from ion.proto.v1 import types_pb2
from ion.proto.v1.events_pb2 import BusMessage

SECRET_MASK = "***"
"""What a secret environment value is shown as, everywhere."""

REQUEST_FIELD = {
    "name": "modulename",
    "subscribes_to": "eventsubscriptions",
    "publishes": "eventpublications",
    "image": "moduleimage",
    "instance_count": "instancecount",
    "retry_count": "retrycount",
    "max_execution_seconds": "maxexecutiontimemins",
    "env": "configmap",
    "secret_env": "secret_env",
    "secretEnv": "secret_env",
    "retry_backoff_seconds": "retry_backoff_seconds",
    "resources": "resources",
    "max_in_flight": "max_in_flight",
    "command": "command",
    "working_dir": "working_dir",
    "handler_image": "handlerimage",
    "image_pull_policy": "image_pull_policy",
    "node_selector": "node_selector",
    "tolerations": "tolerations",
    "service_account": "service_account",
    "secrets": "secrets",
    "image_pull_secrets": "image_pull_secrets",
    "when": "when",
    "routes": "routes",
}
"""Spec field → the create-request field a client sets for it."""

LEGACY_HANDLER_IMAGE = "dotjson/ion-handler"
"""The 2018 CLI's default `--handler-image`, sent by every 2018 client that did not choose one.

It names the 2018 Go handler, which cannot run Ion's jobs, so it is read as "not chosen" (the
executor's default); any other handler image, including a tagged `dotjson/ion-handler:<tag>`,
is kept as given.
"""


def timestamp(value: datetime | None) -> str:
    """Return RFC 3339 UTC text for a time, or '' for none."""
    if value is None:
        return ""
    return value.isoformat().replace("+00:00", "Z")


def spec_from_request(req: module_pb2.ModuleCreateRequest) -> ModuleSpec:
    """Validate a create request into a module spec.

    Raises:
        errors.ValidationError: `.field` is the request field at fault.
    """
    raw: dict[str, Any] = {
        "name": req.modulename.strip(),
        "subscribes_to": req.eventsubscriptions.strip(),
        "publishes": [p.strip() for p in req.eventpublications.split(",") if p.strip()],
        "image": req.moduleimage.strip(),
        "command": list(req.command),
        "env": {**dict(req.configmap), **dict(req.env)},
        "secret_env": dict(req.secret_env),
        "instance_count": req.instancecount or 1,
        "retry_count": req.retrycount,
    }
    if req.HasField("retry_backoff_seconds"):
        raw["retry_backoff_seconds"] = req.retry_backoff_seconds
    if req.HasField("max_execution_seconds"):
        raw["max_execution_seconds"] = req.max_execution_seconds
    elif req.maxexecutiontimemins:
        raw["max_execution_seconds"] = req.maxexecutiontimemins * 60.0
    if req.HasField("resources"):
        raw["resources"] = {
            "cpu": req.resources.cpu,
            "memory": req.resources.memory,
            "gpu": req.resources.gpu,
        }
    if req.working_dir:
        raw["working_dir"] = req.working_dir
    if req.max_in_flight:
        raw["max_in_flight"] = req.max_in_flight
    handler_image = req.handlerimage.strip()
    if handler_image and handler_image != LEGACY_HANDLER_IMAGE:
        raw["handler_image"] = handler_image
    raw.update(
        image_pull_policy=req.image_pull_policy.strip(),
        node_selector=dict(req.node_selector),
        tolerations=[_toleration_from(t) for t in req.tolerations],
        service_account=req.service_account.strip(),
        secrets=list(req.secrets),
        image_pull_secrets=list(req.image_pull_secrets),
        when=req.when,
        routes=[_route_from(r) for r in req.routes],
    )
    if not raw["name"]:
        raise errors.ValidationError(
            "field 'modulename' is required (the module's name)", field="modulename"
        )
    if not raw["subscribes_to"]:
        raise errors.ValidationError(
            "field 'eventsubscriptions' is required (the event type the module subscribes to)",
            field="eventsubscriptions",
        )
    try:
        return ModuleSpec.parse(raw)
    except errors.ValidationError as err:
        top, _, rest = err.field.partition(".")
        field = REQUEST_FIELD.get(top, top or "moduleimage or command")
        if top in ("tolerations", "routes") and rest:
            field = f"{field}.{rest}"  # which toleration, and which of its fields
        detail = str(err).split(": ", 2)[-1]
        raise errors.ValidationError(
            f"field {field!r}: {detail}", field=field, rule=err.rule
        ) from err


def _toleration_from(message: types_pb2.Toleration) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "key": message.key.strip(),
        "operator": message.operator.strip() or "Equal",
        "value": message.value,
        "effect": message.effect.strip(),
    }
    if message.HasField("toleration_seconds"):
        raw["toleration_seconds"] = message.toleration_seconds
    return raw


def _route_from(message: types_pb2.Route) -> dict[str, Any]:
    resources: dict[str, Any] = {"cpu": message.cpu.strip(), "memory": message.memory.strip()}
    if message.HasField("gpu"):
        resources["gpu"] = message.gpu
    return {"when": message.when, "executor": message.executor, "resources": resources}


def route_message(route: Route) -> types_pb2.Route:
    """Return one of a module's routes as `ion.v1.Route`."""
    message = types_pb2.Route(
        when=route.when,
        executor=route.executor,
        cpu=route.resources.cpu,
        memory=route.resources.memory,
    )
    if route.resources.gpu is not None:
        message.gpu = route.resources.gpu
    return message


def route_choice_message(choice: RouteChoice) -> types_pb2.RouteChoice:
    """Return an attempt's route as `ion.v1.RouteChoice`."""
    message = types_pb2.RouteChoice(
        executor=choice.executor,
        when=choice.when,
        resources=types_pb2.Resources(
            cpu=choice.resources.cpu, memory=choice.resources.memory, gpu=choice.resources.gpu
        ),
        notes=choice.notes,
    )
    if choice.index is not None:
        message.index = choice.index
    return message


def toleration_message(toleration: Toleration) -> types_pb2.Toleration:
    """Return a toleration as `ion.v1.Toleration`."""
    message = types_pb2.Toleration(
        key=toleration.key,
        operator=toleration.operator,
        value=toleration.value,
        effect=toleration.effect,
    )
    if toleration.toleration_seconds is not None:
        message.toleration_seconds = toleration.toleration_seconds
    return message


def module_info(record: ModuleRecord, runtime: Runtime) -> types_pb2.ModuleInfo:
    """Return a module's record (and its status) as `ion.v1.ModuleInfo`."""
    spec = record.spec
    return types_pb2.ModuleInfo(
        id=record.id,
        name=spec.name,
        subscribes_to=spec.subscribes_to,
        publishes=spec.publishes,
        command=spec.command,
        image=spec.image,
        env={**spec.env, **dict.fromkeys(spec.secret_env, SECRET_MASK)},
        instance_count=spec.instance_count,
        retry_count=spec.retry_count,
        retry_backoff_seconds=spec.retry_backoff_seconds,
        max_execution_seconds=spec.max_execution_seconds,
        resources=types_pb2.Resources(
            cpu=spec.resources.cpu, memory=spec.resources.memory, gpu=spec.resources.gpu
        ),
        max_in_flight=spec.max_in_flight,
        working_dir=spec.working_dir,
        provider=record.provider,
        created_at=timestamp(record.created_at),
        deleted=record.deleted,
        status=state_of(record, runtime),
        subscription=subscription_of(record)[1],
        handler_image=spec.handler_image,
        image_pull_policy=spec.image_pull_policy,
        node_selector=spec.node_selector,
        tolerations=[toleration_message(t) for t in spec.tolerations],
        service_account=spec.service_account,
        secrets=spec.secrets,
        image_pull_secrets=spec.image_pull_secrets,
        when=spec.when,
        routes=[route_message(r) for r in spec.routes],
    )


def event_info(event: Event) -> types_pb2.EventInfo:
    """Return an event's context and type as `ion.v1.EventInfo`."""
    ctx = event.context
    return types_pb2.EventInfo(
        event_id=ctx.event_id,
        correlation_id=ctx.correlation_id,
        parent_event_id=ctx.parent_event_id,
        published_by=ctx.name,
        event_type=event.type,
        document_type=ctx.document_type,
    )


def meta_event_info(meta: EventMeta) -> types_pb2.EventInfo:
    """Return an eventMeta document's context and type as `ion.v1.EventInfo`."""
    ctx = meta.context
    return types_pb2.EventInfo(
        event_id=meta.id,
        correlation_id=ctx.correlation_id,
        parent_event_id=ctx.parent_event_id,
        published_by=ctx.name,
        event_type=meta.type,
        document_type=ctx.document_type,
    )


def bus_message(message: PeekedMessage, *, topic: str = "", subscription: str = "") -> BusMessage:
    """Return a peeked bus message as `ion.v1.BusMessage`."""
    return BusMessage(
        message_id=message.message_id,
        body=message.body.decode("utf-8", errors="replace"),
        delivery_count=message.delivery_count,
        enqueued_at=timestamp(message.enqueued_at),
        sequence_number=message.sequence_number,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_description=message.dead_letter_description,
        topic=topic,
        subscription=subscription,
        properties=dict(message.properties),
    )


def flat_flow_json(documents: Iterable[FlowDocument]) -> str:
    """Return the 2018 `flowJSON`: every document, indented by 4, in a JSON array."""
    parts = [json.dumps(doc.to_document(), indent=4, ensure_ascii=False) for doc in documents]
    return "[" + ", \n".join(parts) + "]"


def _attempt(attempt: FlowAttempt) -> types_pb2.Attempt:
    message = types_pb2.Attempt(
        id=attempt.id,
        attempt=attempt.attempt,
        state=attempt.state.value,
        started_at=timestamp(attempt.started_at),
        finished_at=timestamp(attempt.finished_at),
        exit_code=attempt.exit_code,
        reason=attempt.reason,
        logs_ref=attempt.logs_ref,
        dispatcher=attempt.dispatcher,
    )
    if attempt.route is not None:
        message.route.CopyFrom(route_choice_message(attempt.route))
    return message


def _run(run: FlowModuleRun) -> types_pb2.FlowModuleRun:
    return types_pb2.FlowModuleRun(
        module=run.module,
        status=run.status.value,
        attempts=[_attempt(a) for a in run.attempts],
        duration_seconds=run.duration_seconds,
        outputs=run.outputs,
        insights=[types_pb2.KeyValue(key=p.key, value=p.value) for p in run.insights],
        logs=run.logs,
        children=[flow_event(c) for c in run.children],
        reason=run.reason,
    )


def flow_event(event: FlowEvent) -> types_pb2.FlowEvent:
    """Return one event of a flow tree as `ion.v1.FlowEvent`."""
    return types_pb2.FlowEvent(
        event_id=event.event_id,
        event_type=event.event_type,
        published_by=event.published_by,
        parent_event_id=event.parent_event_id,
        files=event.files,
        data=[types_pb2.KeyValue(key=p.key, value=p.value) for p in event.data],
        triggered=[_run(r) for r in event.triggered],
        missing_document=event.missing_document,
    )


def flow_message(flow: Flow) -> types_pb2.Flow:
    """Return a flow tree as `ion.v1.Flow` (`root` repeats the first root, for older clients)."""
    message = types_pb2.Flow(
        correlation_id=flow.correlation_id,
        settled=flow.settled,
        succeeded=flow.succeeded,
        roots=[flow_event(r) for r in flow.roots],
    )
    if message.roots:
        message.root.CopyFrom(message.roots[0])
    return message
