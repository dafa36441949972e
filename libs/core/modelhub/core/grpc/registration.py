"""Registering a servicer from its service descriptor, with lenient request parsing.

The generated `add_*Servicer_to_server` functions parse requests inside grpc: a message that does not parse
(e.g. invalid UTF-8 in a string field) fails there as UNKNOWN, before any of our code runs. `add_service`
registers the same methods but hands such a request to the method wrapper, which raises `InvalidArgument`,
so the error mapping answers INVALID_ARGUMENT with a field violation a person can act on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import ModuleType
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError, Message

from modelhub.core.errors import FieldViolation, InvalidArgument

Context = grpc.aio.ServicerContext[Any, Any]
Deserializer = Callable[[bytes], Any]


class Undecodable:
    """What a lenient deserializer hands over for bytes that do not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def lenient(parse: Callable[[bytes], Message]) -> Callable[[bytes], Message | Undecodable]:
    """A request deserializer that returns `Undecodable` instead of raising."""

    def deserialize(data: bytes) -> Message | Undecodable:
        try:
            return parse(data)
        except DecodeError as error:
            return Undecodable(error)

    return deserialize


def reject_undecodable(request: Any) -> Any:
    """The request itself, or InvalidArgument when it did not parse."""
    if isinstance(request, Undecodable):
        raise InvalidArgument(
            f"the request does not parse: {request.error}",
            violations=[FieldViolation("request", "must be a valid message (strings valid UTF-8)")],
        )
    return request


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield reject_undecodable(request)


def _unary(behavior: Callable[[Any, Context], Awaitable[Message]]) -> Callable[[Any, Context], Awaitable[Message]]:
    async def call(request: Any, context: Context) -> Message:
        return await behavior(reject_undecodable(request), context)

    return call


def _client_stream(
    behavior: Callable[[AsyncIterator[Any], Context], Awaitable[Message]],
) -> Callable[[AsyncIterator[Any], Context], Awaitable[Message]]:
    async def call(requests: AsyncIterator[Any], context: Context) -> Message:
        return await behavior(_checked(requests), context)

    return call


def _server_stream(
    behavior: Callable[[Any, Context], AsyncIterator[Message]],
) -> Callable[[Any, Context], AsyncIterator[Message]]:
    async def call(request: Any, context: Context) -> AsyncIterator[Message]:
        async for response in behavior(reject_undecodable(request), context):
            yield response

    return call


def add_service(
    servicer: object,
    server: grpc.aio.Server,
    pb2: ModuleType,
    service: str,
    *,
    deserializers: Mapping[str, Deserializer] | None = None,
) -> None:
    """Register every method of `service` (declared in module `pb2`): unary, client- or server-streaming.

    `deserializers` replaces the request parser of the named methods (one that must return the message,
    an `Undecodable`, or another value the method accepts)."""
    descriptor = pb2.DESCRIPTOR.services_by_name[service]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in descriptor.methods:
        behavior = getattr(servicer, method.name)
        parse = (deserializers or {}).get(method.name) or lenient(getattr(pb2, method.input_type.name).FromString)
        options: dict[str, Any] = {
            "request_deserializer": parse,
            "response_serializer": getattr(pb2, method.output_type.name).SerializeToString,
        }
        if method.client_streaming and method.server_streaming:
            raise NotImplementedError(f"{method.full_name}: bidirectional streaming is not supported")
        if method.client_streaming:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(_client_stream(behavior), **options)
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(_server_stream(behavior), **options)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(_unary(behavior), **options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
