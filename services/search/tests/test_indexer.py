"""The indexer's transaction discipline, on the real database with the in-memory engine behind the port: the
index is written and refreshed before the transaction commits, a rolled-back batch is rewritten identically, and
writers wait while a rebuild holds the index-writes lock."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from modelhub.core.events.model import ReceivedEvent
from modelhub.search.adapters.mirror import INDEX_WRITES_LOCK, MirrorRow, Table, decoded_payloads, mirror_row
from modelhub.search.bootstrap import Search
from modelhub.search.domain.documents import Period
from modelhub.search.rebuild import session_lock

from .catalog_events import envelope, image_snapshot, model_snapshot, model_stats
from .fakes import FakeEngine, FakeIndex


def row(payload: object, version: int) -> MirrorRow:
    env = envelope(payload, version)  # type: ignore[arg-type]
    return mirror_row(ReceivedEvent(envelope=env, payload=payload))  # type: ignore[arg-type]


async def live(search: Search) -> FakeIndex:
    engine = search.engine
    assert isinstance(engine, FakeEngine)
    return await engine.live()


async def committed_models(search: Search) -> int:
    async with search.db.connect() as other:  # another connection sees committed rows only
        return int((await other.execute(text("SELECT count(*) FROM mirror_models"))).scalar_one())


async def test_the_index_is_refreshed_before_the_transaction_commits(fake_search: Search) -> None:
    index = await live(fake_search)
    seen: list[tuple[int, bool]] = []
    refresh = index.refresh

    async def observed_refresh() -> None:
        await refresh()
        seen.append((await committed_models(fake_search), "m1" in index.visible_models))

    index.refresh = observed_refresh  # type: ignore[method-assign]
    async with fake_search.db.begin() as conn:
        written = await fake_search.indexer.apply(conn, [row(model_snapshot("m1"), 1)])
    assert [d.model_id for d in written.models] == ["m1"]
    assert seen == [(0, True)]  # searchable before the mirror row committed
    assert await committed_models(fake_search) == 1


async def test_a_batch_rolled_back_after_the_index_write_is_rewritten_the_same(fake_search: Search) -> None:
    """The crash window between the index write and the commit: the redelivery writes the same documents."""
    index = await live(fake_search)
    batch = [row(model_snapshot("m1", name="Kept"), 3), row(model_stats("m1", downloads=7), 2)]

    async def crash_before_commit() -> None:
        async with fake_search.db.begin() as conn:
            await fake_search.indexer.apply(conn, batch)
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        await crash_before_commit()
    ahead = index.visible_models["m1"]
    assert await committed_models(fake_search) == 0  # the index is ahead of the mirror
    async with fake_search.db.begin() as conn:  # the redelivery
        again = await fake_search.indexer.apply(conn, batch)
    assert again.models == [ahead]
    assert index.visible_models["m1"] == ahead
    async with fake_search.db.begin() as conn:  # and once committed, a third delivery writes nothing
        assert (await fake_search.indexer.apply(conn, batch)).count == 0


async def test_writers_wait_while_a_rebuild_holds_the_lock(fake_search: Search) -> None:
    index = await live(fake_search)

    async def write() -> None:
        async with fake_search.db.begin() as conn:
            await fake_search.indexer.apply(conn, [row(model_snapshot("m1"), 1)])

    async with session_lock(fake_search.db, INDEX_WRITES_LOCK, wait=True):
        writer = asyncio.create_task(write())
        done, _ = await asyncio.wait({writer}, timeout=0.3)
        assert not done  # held at its start
        assert "m1" not in index.models
    await asyncio.wait_for(writer, 10)
    assert "m1" in index.visible_models


@pytest.mark.parametrize("first_is_snapshot", [True, False])
async def test_a_new_models_snapshot_and_stats_in_concurrent_transactions(
    fake_search: Search, first_is_snapshot: bool
) -> None:
    """Two writers (two replicas) get a brand-new model's snapshot and its stats at the same time: the second
    waits for the first to commit, then builds the document from both (neither state is lost)."""
    index = await live(fake_search)
    snapshot, stats = row(model_snapshot("m1"), 1), row(model_stats("m1", downloads=9), 1)
    first_rows, second_rows = ([snapshot], [stats]) if first_is_snapshot else ([stats], [snapshot])
    applied, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with fake_search.db.begin() as conn:
            await fake_search.indexer.apply(conn, first_rows)
            applied.set()
            await release.wait()  # still uncommitted

    async def second() -> None:
        async with fake_search.db.begin() as conn:
            await fake_search.indexer.apply(conn, second_rows)

    one = asyncio.create_task(first())
    await applied.wait()
    two = asyncio.create_task(second())
    done, _ = await asyncio.wait({two}, timeout=0.3)
    assert not done  # waits for the first writer
    release.set()
    await asyncio.wait_for(asyncio.gather(one, two), 10)
    doc = index.visible_models["m1"]
    assert (doc.model_stream_version, doc.stats_stream_version) == (1, 1)
    assert doc.stats[Period.ALL_TIME].downloads == 9


async def test_documents_built_from_the_batchs_decoded_payloads_equal_those_decoded_from_the_mirror(
    fake_search: Search,
) -> None:
    """The consumer hands its decoded payloads on: a mirror row at one of their versions is built from them,
    any other from its stored bytes; both ways give the same documents."""
    mirror = fake_search.mirror
    stored = [row(model_snapshot("m1", name="Old"), 1), row(model_stats("m1", downloads=3), 4)]
    stored += [row(model_snapshot("m2", name="Two"), 2), row(image_snapshot("i1"), 1)]
    newer = [row(model_snapshot("m1", name="New"), 2), row(model_stats("m2", downloads=9), 1)]
    stale = [row(model_snapshot("m2", name="Stale"), 1), row(image_snapshot("i1", prompt="stale"), 1)]
    async with fake_search.db.begin() as conn:
        await mirror.put(conn, stored)
        # The stale rows change nothing (the image's has the very version stored): their payloads are not used.
        changed = await mirror.put(conn, newer + stale)
        from_bytes = await mirror.documents(conn, ["m1", "m2"], ["i1"])
        decoded = decoded_payloads(newer + stale, changed)
        from_batch = await mirror.documents(conn, ["m1", "m2"], ["i1"], decoded)
    assert set(decoded) == {(Table.MODELS, "m1", 2), (Table.MODEL_STATS, "m2", 1)}
    assert from_batch == from_bytes
    assert {d.model_id: d.name for d in from_batch.models} == {"m1": "New", "m2": "Two"}
    assert [d.prompt for d in from_batch.images] == ["a castle on a hill"]
