"""Registering a service whose methods may stream (client or server side), with the same rule as
grpc_support.add_unary_service: a request message that does not parse (e.g. invalid UTF-8 in a string) is
answered INVALID_ARGUMENT by the error mapping, instead of failing as UNKNOWN inside grpc."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError, Message

from modelhub.catalog.entrypoints.grpc_support import Context
from modelhub.core.errors import FieldViolation, InvalidArgument


class _Undecodable:
    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(parse: Callable[[bytes], Message]) -> Callable[[bytes], Message | _Undecodable]:
    def deserialize(data: bytes) -> Message | _Undecodable:
        try:
            return parse(data)
        except DecodeError as error:
            return _Undecodable(error)

    return deserialize


def _check(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(
            f"the request does not parse: {request.error}",
            violations=[FieldViolation("request", "must be a valid message (strings valid UTF-8)")],
        )
    return request


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _check(request)


def _unary(behavior: Callable[[Any, Context], Awaitable[Message]]) -> Callable[[Any, Context], Awaitable[Message]]:
    async def call(request: Any, context: Context) -> Message:
        return await behavior(_check(request), context)

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
        async for response in behavior(_check(request), context):
            yield response

    return call


def add_service(servicer: object, server: grpc.aio.Server, pb2: ModuleType, service: str) -> None:
    """Register every method of `service` (declared in module `pb2`): unary, client- or server-streaming."""
    descriptor = pb2.DESCRIPTOR.services_by_name[service]
    handlers = {}
    for method in descriptor.methods:
        behavior = getattr(servicer, method.name)
        options: dict[str, Any] = {
            "request_deserializer": _lenient(getattr(pb2, method.input_type.name).FromString),
            "response_serializer": getattr(pb2, method.output_type.name).SerializeToString,
        }
        if method.client_streaming and method.server_streaming:
            raise NotImplementedError(f"{method.full_name}: bidirectional streaming is not supported here")
        if method.client_streaming:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(_client_stream(behavior), **options)
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(_server_stream(behavior), **options)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(_unary(behavior), **options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
