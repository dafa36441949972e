"""The gallery and community event types: registration, domain event <-> payload mapping, the image snapshot.

Domain events (domain/community_events.py) have the field names of their payload messages, so one generic
function maps each way: datetimes are Timestamps, `X | None` fields are proto3 `optional` (or message)
fields left unset for None, tuples are repeated fields, mappings are map fields, nested dataclasses are
nested messages.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final

from google.protobuf.message import Message

from modelhub.catalog.domain import community_events as ev
from modelhub.catalog.domain.gallery import Image, ImageCounts
from modelhub.core.events.registry import EventRegistry
from modelhub.events.v1 import catalog_community_pb2 as cc
from modelhub.events.v1 import catalog_pb2 as cpb

# Domain event -> (event type, payload message). ReviewCreated and ModelStatsUpdated are the committed
# contract (catalog.proto, registered by register_contract); the others are catalog_community.proto's.
EVENTS: Final[dict[type[Any], tuple[str, type[Message]]]] = {
    ev.ImagePosted: ("catalog.ImagePosted", cc.CatalogImagePosted),
    ev.ImageUpdated: ("catalog.ImageUpdated", cc.CatalogImageUpdated),
    ev.ImageDeleted: ("catalog.ImageDeleted", cc.CatalogImageDeleted),
    ev.ImageResourcesLinked: ("catalog.ImageResourcesLinked", cc.CatalogImageResourcesLinked),
    ev.ReviewCreated: ("catalog.ReviewCreated", cpb.CatalogReviewCreated),
    ev.ReviewWritten: ("catalog.ReviewWritten", cc.CatalogReviewWritten),
    ev.ReviewDeleted: ("catalog.ReviewDeleted", cc.CatalogReviewDeleted),
    ev.CommentPosted: ("catalog.CommentPosted", cc.CatalogCommentPosted),
    ev.CommentEdited: ("catalog.CommentEdited", cc.CatalogCommentEdited),
    ev.CommentDeleted: ("catalog.CommentDeleted", cc.CatalogCommentDeleted),
    ev.FavoriteAdded: ("catalog.FavoriteAdded", cc.CatalogFavoriteAdded),
    ev.FavoriteRemoved: ("catalog.FavoriteRemoved", cc.CatalogFavoriteRemoved),
    ev.UserFollowed: ("catalog.UserFollowed", cc.CatalogUserFollowed),
    ev.UserUnfollowed: ("catalog.UserUnfollowed", cc.CatalogUserUnfollowed),
    ev.CollectionCreated: ("catalog.CollectionCreated", cc.CatalogCollectionCreated),
    ev.CollectionUpdated: ("catalog.CollectionUpdated", cc.CatalogCollectionUpdated),
    ev.CollectionItemAdded: ("catalog.CollectionItemAdded", cc.CatalogCollectionItemAdded),
    ev.CollectionItemRemoved: ("catalog.CollectionItemRemoved", cc.CatalogCollectionItemRemoved),
    ev.CollectionDeleted: ("catalog.CollectionDeleted", cc.CatalogCollectionDeleted),
    ev.ModelStatsUpdated: ("catalog.ModelStatsUpdated", cpb.CatalogModelStatsUpdated),
}
_NESTED: Final[dict[type[Any], type[Message]]] = {
    ev.GenerationSettings: cc.CatalogGenerationSettings,
    ev.ImageResource: cc.CatalogImageResource,
    ev.PeriodStats: cpb.CatalogModelPeriodStats,
}
_DOMAIN_OF: Final = {message: domain for domain, (_, message) in EVENTS.items()}
_CONTRACT: Final = frozenset({ev.ReviewCreated, ev.ModelStatsUpdated})


def register_community(registry: EventRegistry) -> None:
    """The gallery and community domain events (the contract's types are registered by register_contract)."""
    for domain, (event_type, message) in EVENTS.items():
        if domain not in _CONTRACT:
            registry.register(event_type, message)


def to_payload(event: Any) -> Message:
    """The payload message of a domain event."""
    return _to_message(event, EVENTS[type(event)][1])


def from_payload(payload: Message) -> Any | None:
    """The domain event a payload carries; an image snapshot gives the counts it published; None for payloads
    that are not gallery or community facts."""
    if isinstance(payload, cpb.CatalogImageSnapshot):
        return ev.ImageCountsPublished(payload.image_id, payload.reactions, payload.comments, payload.collected)
    domain = _DOMAIN_OF.get(type(payload))
    return None if domain is None else _from_message(payload, domain)


def image_snapshot(image: Image, counts: ImageCounts) -> cpb.CatalogImageSnapshot:
    """catalog.ImageSnapshot: the image's state after a change, built from the aggregate by this one function."""
    linked = image.linked_versions
    snapshot = cpb.CatalogImageSnapshot(
        image_id=image.id,
        status=image.status.value,
        creator_user_id=image.owner_id,
        creator_username=image.owner_name,
        model_version_ids=[ref.model_version_id for ref in linked],
        model_ids=[ref.model_id for ref in linked],
        tags=list(image.tags),
        nsfw_level=image.nsfw_level,
        prompt=image.generation.prompt or "",
        negative_prompt=image.generation.negative_prompt or "",
        width=image.stored.width,
        height=image.stored.height,
        blurhash=image.stored.blurhash,
        reactions=counts.reactions,
        comments=counts.comments,
        collected=counts.collected,
    )
    if image.created_at is not None:
        snapshot.created_at.FromDatetime(image.created_at)
    return snapshot


# -- the generic mapping ----------------------------------------------------------------------------------


def _to_message(value: Any, message_cls: type[Message]) -> Message:
    message = message_cls()
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if item is None:
            continue
        if isinstance(item, datetime):
            getattr(message, field.name).FromDatetime(item)
        elif dataclasses.is_dataclass(item):
            getattr(message, field.name).CopyFrom(_to_message(item, _NESTED[type(item)]))
        elif isinstance(item, tuple):
            target = getattr(message, field.name)
            for element in item:
                if dataclasses.is_dataclass(element):
                    target.add().CopyFrom(_to_message(element, _NESTED[type(element)]))
                else:
                    target.append(element)
        elif isinstance(item, Mapping):
            getattr(message, field.name).update(item)
        else:
            setattr(message, field.name, item)
    return message


@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_message(message: Message, cls: Any) -> Any:
    hints = _hints(cls)
    return cls(**{field.name: _value(message, field.name, hints[field.name]) for field in dataclasses.fields(cls)})


def _value(message: Message, name: str, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if not message.HasField(name):
            return None
        (hint,) = (arg for arg in args if arg is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    raw = getattr(message, name)
    if hint is datetime:
        return raw.ToDatetime(tzinfo=UTC)
    if origin is tuple:
        element = args[0]
        return tuple(_from_message(item, element) if dataclasses.is_dataclass(element) else item for item in raw)
    if origin is Mapping:
        return dict(raw)
    if dataclasses.is_dataclass(hint):
        return _from_message(raw, hint)
    return raw
