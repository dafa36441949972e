"""The ledger's errors.

Two families. Request errors (InvalidArgument, PermissionDenied) are decided from the request alone;
nothing is written and the key stays unused. Outcomes (`LedgerFailure` subclasses) depend on the ledger's
state: they are stored under the idempotency key, and every retry of that key gets the same failure
("failed keys stay failed").
"""

from __future__ import annotations

from collections.abc import Mapping

from modelhub.core.errors import AlreadyExists, DomainError, FailedPrecondition, NotFound


class LedgerFailure(DomainError):
    """Marker for state-dependent failures that are recorded under the request's key."""


class InsufficientFunds(LedgerFailure, FailedPrecondition):
    def __init__(self, account: str, available: int, needed: int) -> None:
        super().__init__(
            f"account {account} has {available} available, needs {needed}",
            reason="INSUFFICIENT_FUNDS",
            metadata={"account": account, "available": str(available), "needed": str(needed)},
        )


class BalanceOverflow(LedgerFailure, FailedPrecondition):
    def __init__(self, account: str) -> None:
        super().__init__(
            f"account {account} would exceed the largest representable balance",
            reason="BALANCE_OVERFLOW",
            metadata={"account": account},
        )


class HoldNotFound(LedgerFailure, NotFound):
    def __init__(self, hold_id: str) -> None:
        super().__init__(f"no hold {hold_id}", reason="HOLD_NOT_FOUND", metadata={"hold_id": hold_id})


class HoldAlreadyResolved(LedgerFailure, FailedPrecondition):
    def __init__(self, hold_id: str, status: str) -> None:
        super().__init__(
            f"hold {hold_id} is {status} already",
            reason="HOLD_ALREADY_RESOLVED",
            metadata={"hold_id": hold_id, "status": status},
        )


class HoldExpired(LedgerFailure, FailedPrecondition):
    def __init__(self, hold_id: str) -> None:
        super().__init__(f"hold {hold_id} has expired", reason="HOLD_EXPIRED", metadata={"hold_id": hold_id})


class CaptureExceedsHold(LedgerFailure, FailedPrecondition):
    def __init__(self, hold_id: str, held: int, requested: int) -> None:
        super().__init__(
            f"cannot capture {requested} from hold {hold_id} of {held}",
            reason="CAPTURE_EXCEEDS_HOLD",
            metadata={"hold_id": hold_id, "held": str(held), "requested": str(requested)},
        )


class IdempotencyKeyReused(AlreadyExists):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was used for a different request; choose a new key",
            reason="IDEMPOTENCY_KEY_REUSED",
            metadata={"idempotency_key": key},
        )


class StoredFailedPrecondition(LedgerFailure, FailedPrecondition):
    """A FAILED_PRECONDITION outcome read back from the store."""


class StoredNotFound(LedgerFailure, NotFound):
    """A NOT_FOUND outcome read back from the store."""


def failure_kind(error: DomainError) -> str:
    """The status family a failure is stored under."""
    return "NotFound" if isinstance(error, NotFound) else "FailedPrecondition"


def restore_failure(kind: str, reason: str, message: str, metadata: Mapping[str, str]) -> LedgerFailure:
    """The error a stored failure re-raises (same status, reason, message and metadata)."""
    cls: type[LedgerFailure] = StoredNotFound if kind == "NotFound" else StoredFailedPrecondition
    return cls(message, reason=reason, metadata=metadata)
