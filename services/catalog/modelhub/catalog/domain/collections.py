"""The collection aggregate (stream "collection-<id>"): a named set of models or of images, Public (listed),
Unlisted (seen by whoever has its id) or Private (its owner, moderators and admins only). Items are a set:
adding an item that is in it, or removing one that is not, records nothing."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import CommunityAggregate, ItemStatus, SubjectKind
from modelhub.catalog.domain.community_events import (
    CollectionCreated,
    CollectionDeleted,
    CollectionItemAdded,
    CollectionItemRemoved,
    CollectionUpdated,
)
from modelhub.core.errors import FailedPrecondition, FieldViolation, InvalidArgument

MAX_ITEMS: Final = 1000
"""Items per collection (each change holds them all in memory, and its events are read since the last saved
state)."""


class Visibility(StrEnum):
    PUBLIC = "Public"
    UNLISTED = "Unlisted"
    PRIVATE = "Private"


def collection_stream(collection_id: str) -> str:
    return f"collection-{collection_id}"


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


class Collection(CommunityAggregate):
    kind = "collection"
    STATE_SCHEMA = 1

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.owner_name = ""
        self.name = ""
        self.description = ""
        self.visibility = Visibility.PRIVATE
        self.item_kind = SubjectKind.MODEL
        self.status = ItemStatus.ACTIVE
        self.items: dict[str, datetime] = {}
        """Item id -> when it was added, in the order added."""
        self.request_id = ""
        self.created_at: datetime | None = None
        self.updated_at: datetime | None = None

    @property
    def public(self) -> bool:
        return self.status == ItemStatus.ACTIVE and self.visibility != Visibility.PRIVATE

    def state(self) -> dict[str, Any]:
        return {
            "exists": self.exists,
            "id": self.id,
            "owner_id": self.owner_id,
            "owner_name": self.owner_name,
            "name": self.name,
            "description": self.description,
            "visibility": self.visibility.value,
            "item_kind": self.item_kind.value,
            "status": self.status.value,
            "items": [[item_id, at.isoformat()] for item_id, at in self.items.items()],
            "request_id": self.request_id,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.exists, self.id, self.owner_id = state["exists"], state["id"], state["owner_id"]
        self.owner_name, self.name, self.description = state["owner_name"], state["name"], state["description"]
        self.visibility, self.item_kind = Visibility(state["visibility"]), SubjectKind(state["item_kind"])
        self.status = ItemStatus(state["status"])
        self.items = {item_id: datetime.fromisoformat(at) for item_id, at in state["items"]}
        self.request_id = state["request_id"]
        self.created_at = _time(state["created_at"])
        self.updated_at = _time(state["updated_at"])

    def apply(self, event: object) -> None:
        match event:
            case CollectionCreated():
                self.exists = True
                self.id, self.owner_id, self.owner_name = event.collection_id, event.owner_user_id, event.owner_username
                self.name, self.description = event.name, event.description
                self.visibility, self.item_kind = Visibility(event.visibility), SubjectKind(event.item_kind)
                self.request_id = event.request_id
                self.created_at = self.updated_at = event.at
            case CollectionUpdated():
                self.name, self.description = event.name, event.description
                self.visibility, self.updated_at = Visibility(event.visibility), event.at
            case CollectionItemAdded():
                self.items[event.item_id] = event.at
                self.updated_at = event.at
            case CollectionItemRemoved():
                self.items.pop(event.item_id, None)
                self.updated_at = event.at
            case CollectionDeleted():
                self.status, self.updated_at = ItemStatus.DELETED, event.at

    @classmethod
    def create(
        cls,
        collection_id: str,
        actor: Actor,
        name: str,
        description: str,
        visibility: Visibility,
        item_kind: SubjectKind,
        request_id: str,
        now: datetime,
    ) -> Collection:
        collection = cls(collection_stream(collection_id))
        collection.record(
            CollectionCreated(
                collection_id,
                actor.id,
                actor.name or actor.id,
                name,
                description,
                visibility.value,
                item_kind.value,
                request_id,
                now,
            )
        )
        return collection

    def update(
        self, actor: Actor, name: str | None, description: str | None, visibility: Visibility | None, now: datetime
    ) -> None:
        self._require_active()
        new = (
            self.name if name is None else name,
            self.description if description is None else description,
            self.visibility if visibility is None else visibility,
        )
        if new != (self.name, self.description, self.visibility):
            self.record(CollectionUpdated(self.id, new[0], new[1], new[2].value, actor.id, now))

    def add_item(self, actor: Actor, kind: SubjectKind, item_id: str, now: datetime) -> bool:
        """True when the item is new in the collection."""
        self.require_kind(kind)
        if item_id in self.items:
            return False
        if len(self.items) >= MAX_ITEMS:
            raise FailedPrecondition(
                f"collection {self.id} holds {MAX_ITEMS} items, the most a collection may hold",
                reason="COLLECTION_FULL",
            )
        self.record(CollectionItemAdded(self.id, kind.value, item_id, actor.id, now))
        return True

    def require_kind(self, kind: SubjectKind) -> None:
        """Refuse an item of the other kind (and any change of a deleted collection)."""
        self._require_active()
        if kind != self.item_kind:
            raise InvalidArgument(
                f"collection {self.id} collects {self.item_kind.value}s, not {kind.value}s",
                violations=[FieldViolation("item.kind", f"must be {self.item_kind.value}")],
                reason="WRONG_ITEM_KIND",
            )

    def remove_item(self, actor: Actor, item_id: str, now: datetime) -> bool:
        """True when the item was in the collection."""
        self._require_active()
        if item_id not in self.items:
            return False
        self.record(CollectionItemRemoved(self.id, self.item_kind.value, item_id, actor.id, now))
        return True

    def delete(self, actor: Actor, now: datetime) -> None:
        """A retried delete of a deleted collection changes nothing."""
        if self.status != ItemStatus.DELETED:
            self.record(CollectionDeleted(self.id, actor.id, now))

    def _require_active(self) -> None:
        if self.status == ItemStatus.DELETED:
            raise FailedPrecondition(f"collection {self.id} is deleted", reason="COLLECTION_DELETED")
