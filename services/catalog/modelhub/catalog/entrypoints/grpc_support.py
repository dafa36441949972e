"""What every catalog servicer shares: registering a service so that unparseable requests become
INVALID_ARGUMENT, the caller as a domain Actor, and timestamp conversion."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.catalog.domain.commands import Actor
from modelhub.core.errors import FieldViolation, InvalidArgument
from modelhub.core.grpc.auth import Principal, current_principal, require_principal

Context = grpc.aio.ServicerContext[Any, Any]


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


def _guarded(behavior: Callable[[Any, Context], Awaitable[Message]]) -> Callable[[Any, Context], Awaitable[Message]]:
    async def call(request: Any, context: Context) -> Message:
        if isinstance(request, _Undecodable):
            raise InvalidArgument(
                f"the request does not parse: {request.error}",
                violations=[FieldViolation("request", "must be a valid message (strings valid UTF-8)")],
            )
        return await behavior(request, context)

    return call


def add_unary_service(servicer: object, server: grpc.aio.Server, pb2: ModuleType, service: str) -> None:
    """Register the unary methods of `service` (declared in module `pb2`) on `server`: like the generated
    add_*_to_server, but a request that does not parse (e.g. invalid UTF-8 in a string) reaches the error
    mapping as INVALID_ARGUMENT instead of failing as UNKNOWN inside grpc."""
    descriptor = pb2.DESCRIPTOR.services_by_name[service]
    handlers = {}
    for method in descriptor.methods:
        request_cls = getattr(pb2, method.input_type.name)
        response_cls = getattr(pb2, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(servicer, method.name)),
            request_deserializer=_lenient(request_cls.FromString),
            response_serializer=response_cls.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))


def actor_of(principal: Principal) -> Actor:
    """The domain's view of a caller: moderators and admins are privileged."""
    return Actor(principal.id, principal.display_name, privileged=principal.has_role("moderator", "admin"))


def actor() -> Actor:
    """The authenticated caller (UNAUTHENTICATED when anonymous)."""
    return actor_of(require_principal())


def optional_actor() -> Actor | None:
    """The caller of a public method, or None when anonymous."""
    principal = current_principal()
    return None if principal is None else actor_of(principal)


def to_timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def from_timestamp(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)
