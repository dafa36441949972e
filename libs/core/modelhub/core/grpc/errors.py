"""The one place where domain errors become gRPC statuses, and where clients read them back.

Servicers raise `modelhub.core.errors.DomainError` subclasses; `abort_for` (run around every call by the server's
`CallInterceptor`) turns them into a status code plus rich details (google.rpc.Status carrying an ErrorInfo, and
a BadRequest listing the field violations of an InvalidArgument), sent in the `grpc-status-details-bin` trailer.
Any other exception becomes INTERNAL with a generic message and a reference; its traceback goes to the log, never
to the client. `error_details()` decodes it all again on the client side.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import grpc
import grpc.aio
from google.protobuf.any_pb2 import Any as AnyProto
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from modelhub.core.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from modelhub.core.grpc.interceptors import ServicerContext

logger = logging.getLogger(__name__)

ERROR_DOMAIN: Final = "modelhub"
"""`ErrorInfo.domain` of every error modelhub services raise."""
STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"

STATUS_CODES: Final[Mapping[type[DomainError], grpc.StatusCode]] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    Conflict: grpc.StatusCode.ABORTED,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}
"""DomainError class -> status code; subclasses take their nearest ancestor's code (a bare DomainError:
UNKNOWN)."""


def status_code_for(error: DomainError) -> grpc.StatusCode:
    """The status code of a domain error, by its class or nearest mapped ancestor."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.UNKNOWN


def _pack(message: Any) -> AnyProto:
    packed = AnyProto()
    packed.Pack(message)
    return packed


def to_rpc_status(error: DomainError) -> status_pb2.Status:
    """The google.rpc.Status describing `error`: code, message, ErrorInfo, and BadRequest if any."""
    code = status_code_for(error)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    status.details.append(_pack(info))
    if isinstance(error, InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        status.details.append(_pack(bad_request))
    return status


async def abort_with_status(context: ServicerContext, status: status_pb2.Status) -> NoReturn:
    """End the call with `status`, its details in the `grpc-status-details-bin` trailer."""
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    await context.abort(code, status.message, ((STATUS_DETAILS_KEY, status.SerializeToString()),))


def internal_status(reference: str) -> status_pb2.Status:
    """The generic status for an unexpected failure, pointing at the log line with `reference`."""
    status = status_pb2.Status(
        code=grpc.StatusCode.INTERNAL.value[0],
        message=f"internal error (reference {reference}); the details are in the server's log",
    )
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"reference": reference})
    status.details.append(_pack(info))
    return status


async def abort_for(context: ServicerContext, method: str, error: Exception) -> NoReturn:
    """End the call `error` left: a DomainError with its code and details, NotImplementedError as
    UNIMPLEMENTED, anything else as INTERNAL with a reference (its traceback goes to the log, not the client).

    Calls the handler aborted itself (`grpc.aio.AbortError`) and cancellations are the caller's to pass on."""
    if isinstance(error, DomainError):
        logger.debug("%s failed: %s: %s", method, error.reason, error.message)
        await abort_with_status(context, to_rpc_status(error))
    if isinstance(error, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
    reference = uuid.uuid4().hex[:16]
    logger.error("unexpected error in %s (reference %s)", method, reference, exc_info=error)
    await abort_with_status(context, internal_status(reference))


@dataclass(frozen=True)
class RpcErrorDetails:
    """What a failed call said, decoded: status, message, and the rich details when the server sent them."""

    code: grpc.StatusCode
    message: str
    reason: str | None = None
    domain: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    violations: tuple[FieldViolation, ...] = ()


def _trailers(error: grpc.RpcError) -> list[tuple[str, str | bytes]]:
    trailing = getattr(error, "trailing_metadata", None)
    if trailing is None:
        return []
    return [(str(key), value) for key, value in (trailing() or ())]


def error_details(error: grpc.RpcError) -> RpcErrorDetails:
    """Decode a failed call's error (`grpc.aio.AioRpcError` or a sync `grpc.RpcError`/`grpc.Call`)."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    raw = next((v for k, v in _trailers(error) if k == STATUS_DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return RpcErrorDetails(code=code, message=message)
    status = status_pb2.Status.FromString(raw)
    reason = domain = None
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(FieldViolation(v.field, v.description) for v in bad_request.field_violations)
    return RpcErrorDetails(
        code=code,
        message=status.message or message,
        reason=reason,
        domain=domain,
        metadata=metadata,
        violations=tuple(violations),
    )
