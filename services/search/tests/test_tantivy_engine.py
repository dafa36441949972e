"""What only the tantivy engine has: its directory layout, the Relevance depth limit, reopening."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from modelhub.core.errors import FailedPrecondition, NotFound
from modelhub.search.adapters.engines import tantivy_paging
from modelhub.search.adapters.engines.tantivy_engine import TantivyEngine
from modelhub.search.domain.queries import ModelQuery, ModelSort

from .contract.factories import load, model, model_ids


async def test_the_live_pointer_names_the_promoted_generation(tmp_path: Path) -> None:
    engine = TantivyEngine(tmp_path, heap_bytes=16_000_000)
    try:
        first = await engine.live_generation()
        assert (tmp_path / "LIVE").read_text().strip() == first
        generation, _ = await engine.create_generation()
        await engine.promote(generation)
        assert (tmp_path / "LIVE").read_text().strip() == generation
        assert not list(tmp_path.glob("LIVE.*.tmp"))
    finally:
        await engine.close()


async def test_opening_removes_generations_a_crashed_rebuild_left(tmp_path: Path) -> None:
    engine = TantivyEngine(tmp_path, heap_bytes=16_000_000)
    live = await engine.live_generation()
    leftover, index = await engine.create_generation()
    await load(index, [model("half-built")])
    await engine.close()

    reopened = TantivyEngine(tmp_path, heap_bytes=16_000_000)
    try:
        assert await reopened.live_generation() == live
        assert sorted(p.name for p in (tmp_path / "generations").iterdir()) == [live]
        assert leftover != live
    finally:
        await reopened.close()


async def test_a_generation_of_another_layout_is_refused(tmp_path: Path) -> None:
    engine = TantivyEngine(tmp_path, heap_bytes=16_000_000)
    live = await engine.live_generation()
    await engine.close()
    (tmp_path / "generations" / live / "SCHEMA").write_text("0\n")

    with pytest.raises(FailedPrecondition, match="reindex"):
        await TantivyEngine(tmp_path, heap_bytes=16_000_000).live()


async def test_unknown_generations(tmp_path: Path) -> None:
    engine = TantivyEngine(tmp_path, heap_bytes=16_000_000)
    try:
        with pytest.raises(NotFound):
            await engine.promote("g1-abc")
        with pytest.raises(NotFound):
            await engine.drop_generation("../../etc")
    finally:
        await engine.close()


async def test_relevance_walks_stop_at_the_depth_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tantivy_paging, "MAX_RELEVANCE_DEPTH", 25)
    engine = TantivyEngine(tmp_path, heap_bytes=16_000_000)
    try:
        index = await engine.live()
        await load(index, [model(f"m{i:02}", "Anime") for i in range(60)])
        query = ModelQuery(browsing_level=1, text="anime", sort=ModelSort.RELEVANCE, limit=10)

        seen: list[str] = []
        cursor = None
        while True:
            page = await index.search_models(replace(query, cursor=cursor))
            seen += model_ids(page)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor

        assert seen == [f"m{i:02}" for i in range(30)]  # the page that crosses the limit is the last one
    finally:
        await engine.close()
