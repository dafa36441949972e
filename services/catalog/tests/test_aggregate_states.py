"""Saved aggregate states: a collection's stream gains an event per item added or removed, so every
STATE_EVERY events its state is saved with them, and loading it reads only the events after that state; the
load folds to the same collection as the whole stream, and a state commits with its events or not at all."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from modelhub.catalog.adapters.community_repository import STATE_EVERY, CommunityRepository
from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.bootstrap_community import build_community
from modelhub.catalog.domain.collections import Collection, Visibility, collection_stream
from modelhub.catalog.domain.community_base import SubjectKind
from modelhub.catalog.entrypoints.grpc_community import Community

from .community_helpers import model_with
from .model_helpers import ALICE, MOD

MODEL = SubjectKind.MODEL


class Rollback(Exception):
    """Ends a transaction of the test without committing it."""


@pytest.fixture
def community(catalog: Catalog) -> Community:
    return build_community(catalog)


async def saved_state(catalog: Catalog, stream: str) -> tuple[int, int] | None:
    async with catalog.engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT version, schema FROM aggregate_states WHERE stream_id = :s"), {"s": stream})
        ).first()
    return (row.version, row.schema) if row else None


async def churned_collection(catalog: Catalog, community: Community) -> tuple[str, str]:
    """A public collection whose one model was added and removed again and again: (collection id, model id)."""
    model_id, _ = await model_with(catalog, ALICE, "Collected")
    collections = community.collections
    collection_id = (await collections.create(ALICE, "Churn", "", Visibility.PUBLIC, MODEL, "")).collection_id
    for _ in range(STATE_EVERY // 2 + 5):
        await collections.add_item(ALICE, collection_id, MODEL, model_id)
        await collections.remove_item(ALICE, collection_id, model_id)
    await collections.add_item(ALICE, collection_id, MODEL, model_id)
    return collection_id, model_id


async def test_a_long_collection_loads_from_its_saved_state_and_folds_the_same(
    catalog: Catalog, community: Community, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection_id, model_id = await churned_collection(catalog, community)
    stream = collection_stream(collection_id)
    state = await saved_state(catalog, stream)
    assert state is not None and state[0] >= STATE_EVERY and state[1] == Collection.STATE_SCHEMA
    read_after: list[int] = []
    read_stream = catalog.store.read_stream

    async def spied(conn: Any, stream_id: str, after_version: int = 0, **kwargs: Any) -> Any:
        read_after.append(after_version)
        return await read_stream(conn, stream_id, after_version, **kwargs)

    monkeypatch.setattr(catalog.store, "read_stream", spied)
    async with catalog.engine.begin() as conn:
        from_state = await CommunityRepository(conn, catalog.store).load(Collection, stream)
        # A state of another schema (the aggregate's fields changed since it was saved) is ignored.
        await conn.execute(text("UPDATE aggregate_states SET schema = 0 WHERE stream_id = :s"), {"s": stream})
        folded = await CommunityRepository(conn, catalog.store).load(Collection, stream)
        await conn.rollback()
    assert read_after == [state[0], 0]
    assert vars(from_state) == vars(folded)
    assert list(from_state.items) == [model_id] and from_state.version == 2 * (STATE_EVERY // 2 + 5) + 2

    row, removed = await community.collections.remove_item(ALICE, collection_id, model_id)
    assert removed and row.item_count == 0


async def test_a_saved_state_commits_with_its_events_or_not_at_all(catalog: Catalog, community: Community) -> None:
    collection_id, model_id = await churned_collection(catalog, community)
    stream = collection_stream(collection_id)
    before = await saved_state(catalog, stream)
    assert before is not None
    seen: list[int] = []

    async def change_then_roll_back() -> None:
        async with catalog.engine.begin() as conn:
            repo = CommunityRepository(conn, catalog.store)
            collection = await repo.load(Collection, stream)
            seen.append(collection.version)
            now = catalog.clock()
            for _ in range(STATE_EVERY // 2):
                collection.remove_item(ALICE, model_id, now)
                collection.add_item(ALICE, MODEL, model_id, now)
            await repo.save(collection)
            saved = await conn.execute(text("SELECT version FROM aggregate_states WHERE stream_id = :s"), {"s": stream})
            seen.extend((saved.scalar_one(), collection.version))
            raise Rollback

    with pytest.raises(Rollback):
        await change_then_roll_back()
    loaded, *saved = seen
    assert saved == [loaded + STATE_EVERY] * 2, "saved with the events, in their transaction"
    assert await saved_state(catalog, stream) == before


def test_every_field_a_collection_folds_survives_its_saved_state() -> None:
    """Restored from its state (through JSON, as the table keeps it), a collection equals the one folded."""
    at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    folded = Collection.create(
        "c1", ALICE, "Best", "the best ones", Visibility.UNLISTED, SubjectKind.IMAGE, "req-7", at
    )
    folded.add_item(ALICE, SubjectKind.IMAGE, "i2", at + timedelta(seconds=1))
    folded.add_item(ALICE, SubjectKind.IMAGE, "i1", at + timedelta(seconds=2))
    folded.update(ALICE, "Better", None, Visibility.PUBLIC, at + timedelta(seconds=3))
    folded.delete(MOD, at + timedelta(seconds=4))
    restored = Collection(folded.stream_id)
    restored.restore(json.loads(json.dumps(folded.state())))
    restored.pending = folded.pending
    assert vars(restored) == vars(folded)
    assert list(restored.items) == ["i2", "i1"] and restored.status.value == "Deleted"

    empty = Collection("collection-none")
    again = Collection(empty.stream_id)
    again.restore(json.loads(json.dumps(empty.state())))
    assert vars(again) == vars(empty), "a collection never created (no times) too"
