"""What the server does around every call, in one wrapper: metrics, deadline check, error mapping, auth.

In order, outermost first (each sees what the ones inside it did):
1. RPC metrics: the call's duration in `modelhub_rpc_server_duration_seconds{service, method, code}`, with the
   final status code (the mapped one, since error mapping runs inside).
2. Deadline check: DEADLINE_EXCEEDED without running the handler when the client's deadline already passed
   (a deadline passing while the handler runs cancels it: that is gRPC's own).
3. Error mapping (`errors.abort_for`): DomainError -> its status and details, NotImplementedError ->
   UNIMPLEMENTED, anything else -> INTERNAL with a reference; aborts and cancellations pass through.
4. Authentication (`auth.Authenticator`): the bearer token's principal for `current_principal()`.

They were four interceptors; as one, a call pays one interceptor hop, one wrapper coroutine and plain
try/except instead of four of each plus four async context managers (about 15 -> 4 us of CPU per call).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Collection
from typing import Any, Final

import grpc
import grpc.aio

from modelhub.core.grpc.auth import Authenticator, TokenVerifier
from modelhub.core.grpc.errors import abort_for
from modelhub.core.grpc.interceptors import (
    Behavior,
    Continuation,
    MethodHandler,
    ServerInterceptor,
    ServicerContext,
    WrappedHandlers,
    final_code,
    split_method,
    wrap_handler,
)
from modelhub.core.telemetry.metrics import RPC_DURATION


class _Method:
    """One method's calls: its names, whether it needs authentication, its histogram children by code."""

    def __init__(self, method: str, authenticator: Authenticator):
        self.method = method
        self.service, self.name = split_method(method)
        self.authenticator = None if authenticator.exempt(method) else authenticator
        # Bound on first use of each code, so the exposed series are the same as with `labels()` at every call.
        self._durations: dict[grpc.StatusCode, Any] = {}

    def observe(self, context: ServicerContext, error: BaseException | None, started: float) -> None:
        code = final_code(context, error)
        child = self._durations.get(code)
        if child is None:
            child = self._durations[code] = RPC_DURATION.labels(service=self.service, method=self.name, code=code.name)
        child.observe(time.perf_counter() - started)

    def unary(self, behavior: Behavior) -> Behavior:
        method, authenticator = self.method, self.authenticator

        async def call(request: Any, context: ServicerContext) -> Any:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                try:
                    remaining = context.time_remaining()
                    if remaining is not None and remaining <= 0:
                        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, _DEADLINE_PASSED)
                    token = None
                    if authenticator is not None:
                        token = authenticator.act_as(authenticator.principal(method, context.invocation_metadata()))
                    try:
                        result = behavior(request, context)
                        return (await result) if inspect.isawaitable(result) else result
                    finally:
                        if token is not None:
                            Authenticator.reset(token)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await abort_for(context, method, exc)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self.observe(context, error, started)

        return call

    def stream(self, behavior: Behavior) -> Behavior:
        method, authenticator = self.method, self.authenticator

        async def call(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                try:
                    remaining = context.time_remaining()
                    if remaining is not None and remaining <= 0:
                        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, _DEADLINE_PASSED)
                    token = None
                    if authenticator is not None:
                        token = authenticator.act_as(authenticator.principal(method, context.invocation_metadata()))
                    try:
                        async for response in behavior(request, context):
                            yield response
                    finally:
                        if token is not None:
                            Authenticator.reset(token)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await abort_for(context, method, exc)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self.observe(context, error, started)

        return call


_DEADLINE_PASSED: Final = "the deadline passed before the call ran"


class CallInterceptor(ServerInterceptor):
    """Metrics, deadline check, error mapping and authentication around every call (see the module's doc).

    The wrapped handler is built once per method (`WrappedHandlers`)."""

    def __init__(self, verifier: TokenVerifier, public_methods: Collection[str] = ()):
        """`public_methods` ("/pkg.v1.Service/Method") accept anonymous callers."""
        self._authenticator = Authenticator(verifier, public_methods)
        self._wrapped = WrappedHandlers()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler:
        """The next handler, wrapped (unknown methods pass through untouched: grpc answers UNIMPLEMENTED)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # type: ignore[return-value]
        name = handler_call_details.method
        wrapped = self._wrapped.get(name, handler)
        if wrapped is not None:
            return wrapped
        method = _Method(name, self._authenticator)
        return self._wrapped.keep(name, handler, wrap_handler(handler, method.unary, method.stream))
