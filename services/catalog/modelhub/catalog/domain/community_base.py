"""What the gallery and community aggregates share: the aggregate shape, the visibility rule, value sets, and
validation of the fields they have in common.

Refusals follow the model aggregate's order (domain/model.py), so that none reveals a hidden item:
1. an item that is not public is visible only to its owner and to privileged users (moderators, admins, the
   catalog itself); anyone else gets NotFound, worded as for an id that never existed;
2. a visible item is changed only by its owner or a privileged user; anyone else gets PermissionDenied;
3. a stale `expected_version` gets a conflict naming the current one (checked by the handlers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Final

from modelhub.catalog.domain.commands import Actor, Violations, check_text, normalize_tags
from modelhub.core.errors import NotFound, PermissionDenied

MAX_USER_ID: Final = 128
MAX_TEXT: Final = 10_000


class SubjectKind(StrEnum):
    """What a comment, a favourite or a collection item is about."""

    MODEL = "model"
    IMAGE = "image"


class ItemStatus(StrEnum):
    """Status of reviews, comments and collections."""

    ACTIVE = "Active"
    DELETED = "Deleted"


def can_view(actor: Actor | None, owner_id: str, public: bool) -> bool:
    """Public items to everyone; the rest to their owner and privileged users only."""
    return public or (actor is not None and (actor.privileged or actor.id == owner_id))


def not_found(kind: str, item_id: str) -> NotFound:
    """The one refusal for an item that does not exist or that the caller may not see."""
    key = kind.replace(" ", "_")
    return NotFound(f"{kind} {item_id} not found", reason=f"{key.upper()}_NOT_FOUND", metadata={f"{key}_id": item_id})


class CommunityAggregate:
    """Base of the gallery and community aggregates: state is the fold of the stream (`apply`, no checks);
    command methods check, then `record` new events for the repository to append at `version`."""

    kind: str = "item"
    """Name in messages ("image", "review", ...)."""
    STATE_SCHEMA: int | None = None
    """Set by an aggregate whose state may be saved (`state`, `restore`) so that loading it reads only the events
    after the saved one: its streams grow long. Changing its fields changes the number, and older saved states
    are ignored."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.version = 0
        """The stream version loaded or last saved."""
        self.pending: list[Any] = []
        self.exists = False
        self.id = ""
        self.owner_id = ""

    def apply(self, event: Any) -> None:  # pragma: no cover - every aggregate overrides it
        raise NotImplementedError

    def state(self) -> dict[str, Any]:  # pragma: no cover - aggregates with a STATE_SCHEMA override it
        """Everything `apply` has built, as JSON values (the version aside)."""
        raise NotImplementedError

    def restore(self, state: dict[str, Any]) -> None:  # pragma: no cover - aggregates with a STATE_SCHEMA override it
        """Become the aggregate that `state` describes."""
        raise NotImplementedError

    def record(self, event: Any) -> None:
        self.apply(event)
        self.pending.append(event)

    @property
    def public(self) -> bool:
        """Whether everyone may see the item (subclasses say when)."""
        return True

    def visible_to(self, actor: Actor | None) -> bool:
        return self.exists and can_view(actor, self.owner_id, self.public)

    def require_visible(self, actor: Actor | None, item_id: str = "") -> None:
        if not self.visible_to(actor):
            raise not_found(self.kind, item_id or self.id)

    def require_editor(self, actor: Actor, item_id: str = "") -> None:
        """NotFound if the actor cannot see the item, PermissionDenied if it may see but not change it."""
        self.require_visible(actor, item_id)
        if not (actor.privileged or actor.id == self.owner_id):
            raise PermissionDenied(
                f"only the author of {self.kind} {self.id}, a moderator or an admin may change it",
                reason=f"NOT_{self.kind.upper()}_OWNER",
                metadata={f"{self.kind}_id": self.id},
            )


# -- validation shared by the community commands ----------------------------------------------------------


def check_user_id(violations: Violations, field: str, value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= MAX_USER_ID:
        violations.add(field, f"must be a user id of 1 to {MAX_USER_ID} characters; got {len(value)}")
    return value


def check_body(violations: Violations, field: str, value: str, *, required: bool, limit: int = MAX_TEXT) -> str:
    """Text with surrounding spaces removed, at most `limit` characters (and not empty when `required`)."""
    value = value.strip()
    if required and not value:
        violations.add(field, "is required")
    return check_text(violations, field, value, limit)


def check_tags(violations: Violations, field: str, tags: Iterable[str]) -> tuple[str, ...]:
    """Tags as models take them: lower case, trimmed, unique, at most 20 of at most 50 characters."""
    return normalize_tags(violations, field, tags)


def fingerprint(*parts: object) -> str:
    """A digest of what a creation asked for: a retry with the same request id must ask the same."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
