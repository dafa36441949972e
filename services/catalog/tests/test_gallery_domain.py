"""The pure rules of the gallery and community domain: name keys (and their SQL twin), link choice, metadata
merge, and the aggregates' set and idempotency semantics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.adapters.community_events import from_payload, to_payload
from modelhub.catalog.adapters.community_queries import NAME_KEY_SQL
from modelhub.catalog.domain import community_events as ev
from modelhub.catalog.domain.collections import Collection, Visibility
from modelhub.catalog.domain.community_base import SubjectKind
from modelhub.catalog.domain.gallery import VersionRef, choose_link, merge_metadata, name_key
from modelhub.catalog.domain.reviews import Review
from modelhub.catalog.domain.social import Favorite
from modelhub.catalog.images import GenerationMetadata, HashKind, MetadataSource, Resource, ResourceKind
from modelhub.core.errors import AlreadyExists, InvalidArgument

from .model_helpers import ALICE, BOB

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NAMES = {
    "SDXL/juggernautXL_v9.safetensors": "juggernautxl_v9",
    "loras\\Detail.pt": "detail",
    "dreamshaper_8": "dreamshaper_8",
    "model.v2.ckpt": "model.v2",
    "weird name.with spaces": "weird name.with spaces",
}


def test_name_keys() -> None:
    assert {name: name_key(name) for name in NAMES} == NAMES


async def test_the_sql_name_key_is_the_same_function(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        for name in NAMES:
            if "\\" in name:  # stored file names never hold folders; resource names are keyed in Python
                continue
            sql = text(f"SELECT {NAME_KEY_SQL.format(column='CAST(:n AS text)')}")
            assert (await conn.execute(sql, {"n": name})).scalar_one() == name_key(name), name


def test_links_by_hash_take_the_oldest_version_and_names_only_an_unambiguous_one() -> None:
    a, b = VersionRef("01-a", "m1"), VersionRef("02-b", "m2")
    hashed = Resource(ResourceKind.CHECKPOINT, "x", hash="ABCDEF0123", hash_kind=HashKind.AUTOV2)
    named = Resource(ResourceKind.LORA, "x")
    assert choose_link(hashed, [b, a], []) == a
    assert choose_link(hashed, [], [a]) is None  # a hash that matches nothing is not replaced by the name
    assert choose_link(named, [], [a]) == a
    assert choose_link(named, [], [a, b]) is None
    assert choose_link(named, [], []) is None


def test_merge_keeps_the_file_and_fills_its_gaps() -> None:
    from_file = GenerationMetadata(
        prompt="file",
        steps=20,
        source=MetadataSource.A1111,
        resources=(Resource(ResourceKind.LORA, "Style", hash="ABCDEF012345", hash_kind=HashKind.AUTOV3),),
    )
    stated = GenerationMetadata(
        prompt="stated",
        seed=5,
        resources=(Resource(ResourceKind.LORA, "style"), Resource(ResourceKind.EMBEDDING, "neg")),
    )
    merged = merge_metadata(from_file, stated)
    assert (merged.prompt, merged.steps, merged.seed, merged.source) == ("file", 20, 5, MetadataSource.A1111)
    assert [r.name for r in merged.resources] == ["Style", "neg"]  # "style" is the file's LoRA, by name
    assert merge_metadata(None, None) == GenerationMetadata()


def test_events_map_to_payloads_and_back() -> None:
    posted = ev.ImagePosted(
        image_id="i",
        owner_user_id="alice",
        owner_username="Alice",
        model_version_id="",
        model_id="",
        blob_sha256="A" * 64,
        mime_type="image/png",
        size_bytes=10,
        width=1,
        height=2,
        phash="0" * 16,
        blurhash="LE",
        tags=("a",),
        generation=ev.GenerationSettings(prompt="p", seed=2**64 - 1, cfg_scale=0.0, extra={"k": "v"}),
        resources=(ev.ImageResource("lora", "x", weight=None), ev.ImageResource("vae", "y", weight=0.0)),
        request_id="",
        at=NOW,
    )
    stats = ev.ModelStatsUpdated("m", (ev.PeriodStats("Day", favorites=3),), NOW)
    for event in (posted, stats, ev.ReviewCreated("r", "m", "v", "bob", True, NOW)):
        assert from_payload(to_payload(event)) == event
    # Unset optional fields stay unset (None), set zeros stay zeros.
    back = from_payload(to_payload(posted))
    assert (back.generation.steps, back.generation.cfg_scale, back.resources[0].weight) == (None, 0.0, None)


def test_a_review_is_created_once_and_refuses_other_content() -> None:
    review = Review("review-v-bob")
    review.write("r1", BOB, "m", "v", True, "good", NOW)
    review.version = 2
    review.pending.clear()
    review.write("r-other", BOB, "m", "v", True, "good", NOW)  # the same content: a retry
    assert review.pending == []
    with pytest.raises(AlreadyExists):
        review.write("r-other", BOB, "m", "v", False, "bad", NOW)
    review.delete(BOB, NOW)
    review.write("r-other", BOB, "m", "v", False, "bad", NOW)
    assert [type(e).__name__ for e in review.pending] == ["ReviewDeleted", "ReviewWritten"]
    assert review.id == "r1"


def test_sets_record_only_changes() -> None:
    favorite = Favorite("favorite-model-m-bob")
    assert favorite.add(SubjectKind.MODEL, "m", "bob", NOW) is True
    assert favorite.add(SubjectKind.MODEL, "m", "bob", NOW) is False
    assert len(favorite.pending) == 1
    collection = Collection.create("c", ALICE, "n", "", Visibility.PUBLIC, SubjectKind.IMAGE, "", NOW)
    assert collection.add_item(ALICE, SubjectKind.IMAGE, "i", NOW) is True
    assert collection.add_item(ALICE, SubjectKind.IMAGE, "i", NOW) is False
    assert collection.remove_item(ALICE, "nope", NOW) is False
    with pytest.raises(InvalidArgument):
        collection.add_item(ALICE, SubjectKind.MODEL, "m", NOW)
    assert [type(e).__name__ for e in collection.pending] == ["CollectionCreated", "CollectionItemAdded"]
