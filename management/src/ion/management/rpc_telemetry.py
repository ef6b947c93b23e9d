"""A span and metrics for every management API call: one gRPC server interceptor.

Each call of Ion's services is a SERVER span named after the method (`ion.v1.EventService/
Publish`, as OpenTelemetry names RPC spans) whose parent is the caller's `traceparent`
metadata when it sends one; a root event raised by the call starts its flow's trace under it.
Every call, the health checks and reflection included, counts in `ion_grpc_requests_total`
(method, status code) and `ion_grpc_request_duration_seconds` (method); the health checks and
reflection make no spans (a probe every few seconds would bury the flows).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ion.core import metrics

tracer = trace.get_tracer("ion.management")

UNTRACED = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Method prefixes that are counted but make no span."""


def _code_name(context: Any, failed: BaseException | None) -> str:
    """The status code a call ended with (OK, or what the servicer set or aborted with)."""
    code = None
    try:
        code = context.code()
    except (AttributeError, RuntimeError):  # older grpc.aio contexts cannot tell
        code = None
    if code is None:
        code = grpc.StatusCode.UNKNOWN if failed is not None else grpc.StatusCode.OK
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return str(code)


class _Call:
    """Measures one call: a span (unless untraced), the counter and the histogram."""

    def __init__(self, method: str, metadata: Any) -> None:
        self.method = method
        self._traced = not method.startswith(UNTRACED)
        carrier = {str(k): str(v) for k, v in (metadata or ()) if isinstance(v, str)}
        self._parent = propagate.extract(carrier)

    def span(self) -> Any:
        """The call's span context manager (a no-op span when untraced)."""
        if not self._traced:
            return trace.use_span(trace.INVALID_SPAN)
        service, _, name = self.method.lstrip("/").partition("/")
        return tracer.start_as_current_span(
            self.method.lstrip("/"),
            context=self._parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )

    def end(self, span: Any, context: Any, started: float, failed: BaseException | None) -> None:
        """Record the outcome on the span and in the metrics."""
        code = _code_name(context, failed)
        metrics.GRPC_REQUESTS.labels(self.method, code).inc()
        metrics.GRPC_DURATION.labels(self.method).observe(time.perf_counter() - started)
        if self._traced:
            span.set_attribute("rpc.grpc.status_code", code)
            if code != "OK":
                span.set_status(Status(StatusCode.ERROR, code))


def _unary(call: _Call, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: Any) -> Any:
        started = time.perf_counter()
        with call.span() as span:
            failed: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as err:
                failed = err
                raise
            finally:
                call.end(span, context, started, failed)

    return wrapped


def _streaming(
    call: _Call, behavior: Callable[..., AsyncIterator[Any]]
) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: Any) -> AsyncIterator[Any]:
        started = time.perf_counter()
        with call.span() as span:
            failed: BaseException | None = None
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as err:
                failed = err
                raise
            finally:
                call.end(span, context, started, failed)

    return wrapped


class TelemetryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # untyped base
    """Wraps every method handler of the server it is given to (see the module docstring)."""

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any
    ) -> Any:
        """Return the method's handler with its behaviour measured (None stays None)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        call = _Call(handler_call_details.method, handler_call_details.invocation_metadata)
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(_unary(call, handler.unary_unary), **kwargs)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _unary(call, handler.stream_unary), **kwargs
            )
        # A streaming method is an async generator, or a coroutine that writes to its context.
        if handler.unary_stream is not None:
            fn = handler.unary_stream
            wrap = _streaming if inspect.isasyncgenfunction(fn) else _unary
            return grpc.unary_stream_rpc_method_handler(wrap(call, fn), **kwargs)
        if handler.stream_stream is not None:
            fn = handler.stream_stream
            wrap = _streaming if inspect.isasyncgenfunction(fn) else _unary
            return grpc.stream_stream_rpc_method_handler(wrap(call, fn), **kwargs)
        return handler
