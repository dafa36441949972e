"""The OpenTelemetry server interceptor, with its per-method work done once per method instead of per call.

OpenTelemetry's aio interceptor evaluates its filter (a typing-Protocol `isinstance` and string splitting, about
a fifth of its cost) and builds a new wrapped handler at every call. Both depend on the method name alone, so
`TracingInterceptor` keeps them per method. Each call still runs the library's own span code unchanged: the
same span name, kind, attributes (passed at creation, where samplers see them), status, remote parent and
instrumentation scope; suppressing instrumentation (`suppress_instrumentation`) still takes effect per call.
It calls the library's per-call span code (private names, pinned by requirements.lock); tests compare its
spans with the library's own interceptor's, so an upgrade that changes them fails there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.instrumentation.grpc._server import _wrap_rpc_behavior
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import TracerProvider

from modelhub.core.grpc.interceptors import Continuation, MethodHandler, ServerInterceptor, WrappedHandlers

_MAX_METHODS = 10_000
"""A bound on the per-method filter answers kept, against callers inventing method names."""


@dataclass(frozen=True)
class _MethodDetails:
    """What the span code reads of a call's details: the method alone (no call's metadata is kept)."""

    method: str


class TracingInterceptor(ServerInterceptor):
    """A server span per call, continuing the caller's trace; `filter_(details)` False leaves a method untraced.

    `filter_` is asked once per method, so it must depend on `details.method` alone (OpenTelemetry's
    `opentelemetry.instrumentation.grpc.filters` do)."""

    def __init__(self, filter_: Callable[[Any], bool] | None = None, *, tracer_provider: TracerProvider | None = None):
        """Spans go to `tracer_provider`, by default the global one."""
        # The library's own interceptor: its tracer (instrumentation scope) and its per-call span code.
        self._otel: Any = aio_server_interceptor(tracer_provider, filter_=filter_)  # type: ignore[no-untyped-call]
        self._filter = filter_
        self._traced: dict[str, bool] = {}
        self._wrapped = WrappedHandlers(_MAX_METHODS)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler:
        """The next handler wrapped in the span code (built once per method while the next handler stays the
        same object, as it does for generic handlers and the interceptors further in)."""
        handler = await continuation(handler_call_details)
        if handler is None or not is_instrumentation_enabled():
            return handler  # type: ignore[return-value]  # None: grpc answers UNIMPLEMENTED
        method = handler_call_details.method
        traced = self._traced.get(method)
        if traced is None:
            traced = self._filter is None or bool(self._filter(handler_call_details))
            if len(self._traced) < _MAX_METHODS:
                self._traced[method] = traced
        if not traced:
            return handler
        cached = self._wrapped.get(method, handler)
        if cached is not None:
            return cached
        details = _MethodDetails(method)
        otel = self._otel

        def telemetry_wrapper(behavior: Any, request_streaming: bool, response_streaming: bool) -> Any:
            if response_streaming:
                return otel._intercept_aio_server_stream(behavior, details)
            return otel._intercept_aio_server_unary(behavior, details)

        wrapped: MethodHandler = _wrap_rpc_behavior(handler, telemetry_wrapper)  # type: ignore[no-untyped-call]
        return self._wrapped.keep(method, handler, wrapped)
