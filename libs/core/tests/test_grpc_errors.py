"""The DomainError -> gRPC status table and the rich details, encoded and decoded without a server."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]

from modelhub.core.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StreamVersionConflict,
    Unauthenticated,
)
from modelhub.core.grpc.errors import (
    STATUS_DETAILS_KEY,
    error_details,
    internal_status,
    status_code_for,
    to_rpc_status,
)


class InsufficientFunds(FailedPrecondition):
    reason = "INSUFFICIENT_FUNDS"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
        (Conflict("x"), grpc.StatusCode.ABORTED),
        (StreamVersionConflict("s", 1, 2), grpc.StatusCode.ABORTED),
        (FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (InsufficientFunds("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
        (Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
        (DomainError("x"), grpc.StatusCode.UNKNOWN),
    ],
)
def test_each_domain_error_has_one_status_code(error: DomainError, code: grpc.StatusCode) -> None:
    assert status_code_for(error) == code
    assert to_rpc_status(error).code == code.value[0]


def test_rpc_status_carries_error_info_and_field_violations() -> None:
    error = InvalidArgument(
        "bad model",
        violations=[FieldViolation("name", "must not be empty")],
        metadata={"model_id": "m1"},
    )
    status = to_rpc_status(error)
    assert status.message == "bad model"
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "INVALID_ARGUMENT",
        "modelhub",
        {"model_id": "m1"},
    )
    assert status.details[1].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [("name", "must not be empty")]


def test_only_invalid_argument_with_violations_carries_a_bad_request() -> None:
    assert len(to_rpc_status(InvalidArgument("x")).details) == 1
    assert len(to_rpc_status(InsufficientFunds("no Buzz")).details) == 1


def rpc_error(code: grpc.StatusCode, message: str, trailing: tuple[tuple[str, bytes], ...]) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), message, None)


def test_error_details_round_trip() -> None:
    error = StreamVersionConflict("widget-1", 3, 5)
    status = to_rpc_status(error)
    decoded = error_details(
        rpc_error(grpc.StatusCode.ABORTED, status.message, ((STATUS_DETAILS_KEY, status.SerializeToString()),))
    )
    assert decoded.code == grpc.StatusCode.ABORTED
    assert decoded.message == error.message
    assert decoded.reason == "STREAM_VERSION_CONFLICT"
    assert decoded.domain == "modelhub"
    assert decoded.metadata == {"stream_id": "widget-1", "expected_version": "3", "actual_version": "5"}
    assert decoded.violations == ()


def test_error_details_without_rich_status() -> None:
    decoded = error_details(rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused", ()))
    assert (decoded.code, decoded.message, decoded.reason, decoded.violations) == (
        grpc.StatusCode.UNAVAILABLE,
        "connection refused",
        None,
        (),
    )


def test_internal_status_is_generic() -> None:
    status = internal_status("abc123")
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert status.code == grpc.StatusCode.INTERNAL.value[0]
    assert "abc123" in status.message
    assert (info.reason, dict(info.metadata)) == ("INTERNAL", {"reference": "abc123"})
