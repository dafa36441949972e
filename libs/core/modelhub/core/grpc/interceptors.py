"""Server interceptors as async context managers around each call, whatever the call's streaming shape.

A `ScopedInterceptor` returns, per method, a factory of async context managers; the call's behaviour runs
inside it, so the scope sees the call's exceptions (and may translate them) and may set context variables
for the handler. This module also holds the Prometheus RPC-latency interceptor.
"""

from __future__ import annotations

import abc
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio

from modelhub.core.telemetry.metrics import RPC_DURATION

if TYPE_CHECKING:  # grpc's classes are generic in its stubs only
    ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    MethodHandler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    _ServerInterceptor: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
else:
    ServicerContext = grpc.aio.ServicerContext
    MethodHandler = grpc.RpcMethodHandler
    _ServerInterceptor = grpc.aio.ServerInterceptor

Scope: TypeAlias = "Callable[[ServicerContext], AbstractAsyncContextManager[None]]"
"""Makes the async context manager one call runs in."""
Behavior: TypeAlias = Callable[..., Any]
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[MethodHandler | None]]"


def split_method(full_method: str) -> tuple[str, str]:
    """`"/pkg.v1.Service/Method"` -> `("pkg.v1.Service", "Method")`."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def _wrap_behavior(behavior: Behavior, scope: Scope) -> Behavior:
    if inspect.isasyncgenfunction(behavior):

        async def streaming(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            async with scope(context):
                async for response in behavior(request, context):
                    yield response

        return streaming

    async def unary(request: Any, context: ServicerContext) -> Any:
        async with scope(context):
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result

    return unary


def wrap_handler(handler: MethodHandler, scope: Scope) -> MethodHandler:
    """A copy of `handler` whose behaviour runs inside `scope(context)`."""
    kwargs: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_wrap_behavior(handler.unary_unary, scope), **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_wrap_behavior(handler.unary_stream, scope), **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_wrap_behavior(handler.stream_unary, scope), **kwargs)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(_wrap_behavior(handler.stream_stream, scope), **kwargs)
    return handler


class ScopedInterceptor(_ServerInterceptor, abc.ABC):
    """Base class: run every call of the methods it cares about inside `scope_for(details)(context)`.

    The wrapped handler is built once per method and reused while the next handler stays the same object
    (it does: generic handlers hand out the same handler per method, and so does every ScopedInterceptor
    further in), so `scope_for` must depend on `details.method` only; per-call state belongs in the scope.
    """

    _wrapped: dict[str, tuple[MethodHandler, MethodHandler]]

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler:
        """Wrap the next handler in this interceptor's scope (unknown methods pass through untouched)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # type: ignore[return-value]  # grpc answers UNIMPLEMENTED
        method = handler_call_details.method
        try:
            cache = self._wrapped
        except AttributeError:
            cache = self._wrapped = {}
        cached = cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        scope = self.scope_for(handler_call_details)
        wrapped = handler if scope is None else wrap_handler(handler, scope)
        if len(cache) < 10_000:  # a bound against unknown method names
            cache[method] = (handler, wrapped)
        return wrapped

    @abc.abstractmethod
    def scope_for(self, details: grpc.HandlerCallDetails) -> Scope | None:
        """The scope factory for calls of `details.method`, or None to leave the method alone."""


def final_code(context: ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status a call ends with, judged from its context and the exception that left its handler."""
    if isinstance(error, BaseException) and not isinstance(error, grpc.aio.AbortError):
        if isinstance(error, Exception):
            return grpc.StatusCode.UNKNOWN
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if code is None:
        return grpc.StatusCode.OK
    if isinstance(code, grpc.StatusCode):
        return code
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)


class RpcMetricsInterceptor(ScopedInterceptor):
    """Observes each call's duration in the `modelhub_rpc_server_duration_seconds` histogram."""

    def scope_for(self, details: grpc.HandlerCallDetails) -> Scope:
        """Time the call and label it with its service, method and final status code."""
        service, method = split_method(details.method)

        @asynccontextmanager
        async def scope(context: ServicerContext) -> AsyncIterator[None]:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                yield
            except BaseException as exc:
                error = exc
                raise
            finally:
                code = final_code(context, error)
                RPC_DURATION.labels(service=service, method=method, code=code.name).observe(
                    time.perf_counter() - started
                )

        return scope


class DeadlineInterceptor(ScopedInterceptor):
    """Answers DEADLINE_EXCEEDED without running the handler when the client's deadline already passed.

    Calls whose deadline passes while the handler runs are cancelled by gRPC itself (the handler's task
    gets `asyncio.CancelledError`); this covers calls that waited too long before reaching a handler.
    """

    def scope_for(self, details: grpc.HandlerCallDetails) -> Scope:
        """Check the remaining time before the handler starts."""

        @asynccontextmanager
        async def scope(context: ServicerContext) -> AsyncIterator[None]:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the call ran")
            yield

        return scope
