"""The frozen v1 fixture of the gallery and community events still reads as the current schema.

fixtures/catalog_community_events_v1.jsonl holds envelopes exactly as schema version 1 wrote them, with the
payload fields each must still yield (`facts`). Like the model events' fixture (fixtures/README.md), it is
never regenerated or edited: a new schema version adds an upcaster and keeps this test passing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from modelhub.catalog.adapters.community_events import EVENTS, from_payload
from modelhub.catalog.adapters.events import make_registry
from modelhub.catalog.domain.collections import Collection, Visibility
from modelhub.catalog.domain.comments import Comment
from modelhub.catalog.domain.community_base import CommunityAggregate, ItemStatus
from modelhub.catalog.domain.gallery import Image, ImageCounts, ImageStatus, VersionRef
from modelhub.catalog.domain.reviews import Review
from modelhub.catalog.domain.social import Favorite, Follow
from modelhub.events.v1 import envelope_pb2

FIXTURE = Path(__file__).parent / "fixtures" / "catalog_community_events_v1.jsonl"
AGGREGATES: dict[str, type[CommunityAggregate]] = {
    "image": Image,
    "review": Review,
    "comment": Comment,
    "favorite": Favorite,
    "follow": Follow,
    "collection": Collection,
}


def test_v1_community_events_still_read_as_the_current_version_and_fold() -> None:
    registry = make_registry()
    folded: dict[str, Any] = {}
    seen: set[str] = set()
    for line in FIXTURE.read_text().splitlines():
        record = json.loads(line)
        envelope = envelope_pb2.EventEnvelope.FromString(base64.b64decode(record["envelope"]))
        payload = registry.decode(envelope.event_type, envelope.schema_version, envelope.payload)
        decoded = MessageToDict(payload, preserving_proto_field_name=True)
        assert {k: decoded.get(k) for k in record["facts"]} == record["facts"], envelope.event_type
        seen.add(envelope.event_type)
        kind = envelope.stream_id.split("-", 1)[0]
        if kind in AGGREGATES:
            aggregate = folded.setdefault(envelope.stream_id, AGGREGATES[kind](envelope.stream_id))
            aggregate.apply(from_payload(payload))
    later = {"catalog.ImageResourcesLinked"}  # in test_autov3_fixture.py
    assert {event_type for event_type, _ in EVENTS.values()} - later | {"catalog.ImageSnapshot"} <= seen

    image = folded["image-i1"]
    assert (image.status, image.tags, image.counts, image.gallery) == (
        ImageStatus.DELETED,
        ("knight", "night"),
        ImageCounts(2, 1, 1),
        VersionRef("v1", "m1"),
    )
    assert (image.generation.seed, image.generation.comfyui_workflow_sha256) == (42, "B" * 64)
    assert image.linked_versions == [VersionRef("v1", "m1")]
    review = folded["review-v1-carol"]
    assert (review.id, review.status, review.recommended, review.text) == ("r1", ItemStatus.ACTIVE, False, "meh")
    comment = folded["comment-c1"]
    assert (comment.status, comment.body) == (ItemStatus.DELETED, "")
    assert folded["favorite-model-m1-carol"].active is True
    assert folded["follow-carol-alice"].active is False
    collection = folded["collection-k1"]
    assert (collection.name, collection.visibility, list(collection.items), collection.status) == (
        "Favourites",
        Visibility.PUBLIC,
        ["m1"],
        ItemStatus.DELETED,
    )
