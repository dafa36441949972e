"""What the server's interceptors share: grpc's types, method names, and the status a call ended with."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio

if TYPE_CHECKING:  # grpc's classes are generic in its stubs only
    ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    MethodHandler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    ServerInterceptor: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
else:
    ServicerContext = grpc.aio.ServicerContext
    MethodHandler = grpc.RpcMethodHandler
    ServerInterceptor = grpc.aio.ServerInterceptor

Behavior: TypeAlias = Callable[..., Any]
"""A handler's behaviour: a coroutine function, or an async generator function for server streaming."""
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[MethodHandler | None]]"


def split_method(full_method: str) -> tuple[str, str]:
    """`"/pkg.v1.Service/Method"` -> `("pkg.v1.Service", "Method")`."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def wrap_handler(
    handler: MethodHandler, wrap_unary: Callable[[Behavior], Behavior], wrap_stream: Callable[[Behavior], Behavior]
) -> MethodHandler:
    """A copy of `handler` whose behaviour is `wrap_stream(behaviour)` when it is an async generator function
    (it yields responses), `wrap_unary(behaviour)` otherwise (it returns the response)."""
    kwargs: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    for behavior, make in (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    ):
        if behavior is not None:
            wrap = wrap_stream if inspect.isasyncgenfunction(behavior) else wrap_unary
            return make(wrap(behavior), **kwargs)
    return handler


class WrappedHandlers:
    """An interceptor's wrapped handlers by method, each reused while the handler it wraps stays the same object
    (it does: generic handlers hand out the same handler per method, and so do the interceptors further in).
    Holds at most `max_methods`, a bound against callers inventing method names."""

    def __init__(self, max_methods: int = 10_000) -> None:
        self._max = max_methods
        self._entries: dict[str, tuple[MethodHandler, MethodHandler]] = {}

    def get(self, method: str, handler: MethodHandler) -> MethodHandler | None:
        """The wrapped handler kept for `method`, if it wraps this very `handler`."""
        entry = self._entries.get(method)
        return entry[1] if entry is not None and entry[0] is handler else None

    def keep(self, method: str, handler: MethodHandler, wrapped: MethodHandler) -> MethodHandler:
        """Remember `wrapped` as `method`'s wrapping of `handler` (while there is room); returns `wrapped`."""
        if len(self._entries) < self._max or method in self._entries:
            self._entries[method] = (handler, wrapped)
        return wrapped


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
