"""Domain errors: what went wrong, in the domain's words.

Handlers raise these; the gRPC layer maps each class to one status code in one place
(modelhub.core.grpc.errors), so no servicer chooses status codes by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request: which one, and what a person should do about it."""

    field: str
    description: str


class DomainError(Exception):
    """Base class. `reason` is a stable UPPER_SNAKE identifier clients may branch on; `metadata` adds facts."""

    reason: str = "DOMAIN_ERROR"

    def __init__(self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(DomainError):
    """The request is malformed; retrying it unchanged will fail again."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        violations: list[FieldViolation] | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ):
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = violations or []


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""

    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    """The thing to create exists already."""

    reason = "ALREADY_EXISTS"


class Conflict(DomainError):
    """A concurrent change won (optimistic concurrency): reread, then retry."""

    reason = "CONFLICT"


class FailedPrecondition(DomainError):
    """The system is not in a state that allows this (insufficient funds, unpublished version, ...)."""

    reason = "FAILED_PRECONDITION"


class PermissionDenied(DomainError):
    """The caller is known but not allowed to do this."""

    reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    """The caller could not be identified (missing, expired or invalid credentials)."""

    reason = "UNAUTHENTICATED"


class StreamVersionConflict(Conflict):
    """Append to a stream at an expected version that is no longer its current version."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int):
        super().__init__(
            f"stream {stream_id!r} is at version {actual_version}, not {expected_version}: reload it and retry",
            reason="STREAM_VERSION_CONFLICT",
            metadata={
                "stream_id": stream_id,
                "expected_version": str(expected_version),
                "actual_version": str(actual_version),
            },
        )
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
