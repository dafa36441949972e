"""What every catalog servicer shares: the caller as a domain Actor, and timestamp conversion. (Services are
registered with modelhub.core.grpc.registration.add_service.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.catalog.domain.commands import Actor
from modelhub.core.grpc.auth import Principal, current_principal, require_principal

Context = grpc.aio.ServicerContext[Any, Any]


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
