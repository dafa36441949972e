"""Keyset cursors: pages never skip or repeat an item that stays in the result set, whatever changes between
pages, and a page with a next cursor is never empty.

The guarantee, precisely: walking a query page by page, every item that is in the result set for the whole
walk with the same sort position (sort value, or text score for Relevance) is returned exactly once, and pages
come in the sort order. Items inserted, deleted or moved (sort value changed) during the walk may or may not
be returned, and a moved item may be returned twice (once at each position).
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from modelhub.search.domain import ranking
from modelhub.search.domain.documents import ModelDocument, Period, PeriodStats
from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import ImageQuery, ModelQuery, ModelSort
from modelhub.search.domain.ranking import tiebreak

from .factories import image, image_ids, load, model, model_ids

PG = 1
# Two ids whose 31-bit tie-breakers collide: with equal values they share a sort key.
TWINS = ("tie-28668", "tie-37216")


def downloads(n: int) -> dict[Period, PeriodStats]:
    return {p: PeriodStats(downloads=n, thumbs_up=n % 3) for p in Period}


async def walk(index: SearchIndex, query: ModelQuery) -> list[list[str]]:
    pages = []
    cursor = None
    while True:
        page = await index.search_models(replace(query, cursor=cursor))
        pages.append(model_ids(page))
        if page.next_cursor is None:
            return pages
        assert page.hits, "a page with a next cursor must not be empty"
        cursor = page.next_cursor


@pytest.fixture(params=["hashed", "constant"])
def tie_breakers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """ "hashed": the real tie-breakers (collisions are rare); "constant": every tie-breaker is 0, so every equal
    value is a shared sort key and pages must cut through large groups of equal keys exactly."""
    if request.param == "constant":
        monkeypatch.setattr(ranking, "tiebreak", lambda item_id: 0)
    return str(request.param)


def test_the_twins_share_a_tie_breaker() -> None:
    assert tiebreak(TWINS[0]) == tiebreak(TWINS[1])


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
@pytest.mark.parametrize(
    ("sort", "text"),
    [
        (ModelSort.MOST_DOWNLOADED, ""),
        (ModelSort.HIGHEST_RATED, ""),
        (ModelSort.NEWEST, ""),
        (ModelSort.RELEVANCE, "anime"),
    ],
)
async def test_pages_cover_the_result_set_once_in_order(
    index: SearchIndex, sort: ModelSort, text: str, limit: int, tie_breakers: str
) -> None:
    docs = [model(f"m{i:02}", f"Anime {i % 3}", stats=downloads(i % 4)) for i in range(23)]
    docs += [model(twin, "Anime 1", stats=downloads(2)) for twin in TWINS]
    await load(index, docs)
    query = ModelQuery(browsing_level=PG, text=text, sort=sort, limit=limit)

    pages = await walk(index, query)

    walked = [i for page in pages for i in page]
    whole = model_ids(await index.search_models(replace(query, limit=100)))
    assert walked == whole
    assert len(walked) == len(docs)
    assert all(len(page) == limit for page in pages[:-1])
    if sort is not ModelSort.NEWEST:  # equal values are ordered by id (among equal tie-breakers)
        assert walked.index(TWINS[0]) + 1 == walked.index(TWINS[1]) or sort is ModelSort.RELEVANCE


@pytest.mark.parametrize("twins", [TWINS, TWINS[::-1]])
@pytest.mark.parametrize("limit", [1, 2])
async def test_twins_split_across_pages(index: SearchIndex, twins: tuple[str, str], limit: int) -> None:
    # Whatever order the engine finds them in, twins (equal sort keys) come in id order, each once.
    await load(index, [model("top", stats=downloads(9))])
    await load(index, [model(twins[0], stats=downloads(5)), model(twins[1], stats=downloads(5))])
    await load(index, [model("x")])

    pages = await walk(index, ModelQuery(browsing_level=PG, sort=ModelSort.MOST_DOWNLOADED, limit=limit))

    assert [i for page in pages for i in page] == ["top", TWINS[0], TWINS[1], "x"]


async def test_equal_text_scores_come_in_id_order_across_pages(index: SearchIndex) -> None:
    # More equal scores than one re-ranking window holds (tantivy): the windows must grow, not cut the group.
    ids = [f"m{i:03}" for i in range(150)]
    await load(index, [model(i, "Anime Art") for i in reversed(ids)])

    pages = await walk(index, ModelQuery(browsing_level=PG, text="anime", sort=ModelSort.RELEVANCE, limit=40))

    assert [i for page in pages for i in page] == ids


async def test_no_empty_last_page(index: SearchIndex) -> None:
    await load(index, [model(f"m{i}") for i in range(4)])

    first = await index.search_models(ModelQuery(browsing_level=PG, limit=4))
    assert len(first.hits) == 4
    assert first.next_cursor is None

    none = await index.search_models(ModelQuery(browsing_level=PG, text="nothing-matches-this"))
    assert none.hits == ()
    assert none.next_cursor is None


async def test_the_page_size_may_change_between_pages(index: SearchIndex) -> None:
    await load(index, [model(f"m{i}", stats=downloads(i)) for i in range(10)])
    query = ModelQuery(browsing_level=PG, sort=ModelSort.MOST_DOWNLOADED, limit=3)

    first = await index.search_models(query)
    rest = await index.search_models(replace(query, limit=100, cursor=first.next_cursor))

    assert model_ids(first) + model_ids(rest) == [f"m{i}" for i in range(9, -1, -1)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("sort", "text"), [(ModelSort.MOST_DOWNLOADED, ""), (ModelSort.RELEVANCE, "anime")])
async def test_items_that_stay_are_returned_once_while_others_change(
    index: SearchIndex, seed: int, sort: ModelSort, text: str, tie_breakers: str
) -> None:
    rng = random.Random(seed)
    live: dict[str, ModelDocument] = {}
    changed: set[str] = set()  # inserted, deleted or moved during the walk

    def make(model_id: str, value: int) -> ModelDocument:
        # Few distinct values: many equal sort values, and equal text scores for Relevance.
        return model(model_id, "Anime Art", stats={Period.ALL_TIME: PeriodStats(downloads=value * 1000)})

    initial = [make(f"m{i:03}", rng.randrange(4)) for i in range(60)]
    initial += [make(twin, 2) for twin in TWINS]
    live.update((d.model_id, d) for d in initial)
    await load(index, initial)
    query = ModelQuery(browsing_level=PG, text=text, sort=sort, limit=rng.randint(2, 6))

    seen: list[str] = []
    cursor = None
    counter = 0
    while True:
        page = await index.search_models(replace(query, cursor=cursor, limit=rng.randint(1, 8)))
        seen += model_ids(page)
        if page.next_cursor is None:
            break
        assert page.hits
        cursor = page.next_cursor
        # Change the index between pages.
        writes: list[ModelDocument] = []
        deletes: list[str] = []
        for _ in range(rng.randint(0, 4)):
            action = rng.choice(["insert", "delete", "move", "touch"])
            counter += 1
            if action == "insert":
                doc = make(f"new{counter:03}", rng.randrange(4))
                changed.add(doc.model_id)
            elif not live:
                continue
            else:
                victim = live[rng.choice(sorted(live))]
                if action == "delete":
                    deletes.append(victim.model_id)
                    del live[victim.model_id]
                    changed.add(victim.model_id)
                    continue
                if action == "move":
                    old = victim.stats[Period.ALL_TIME].downloads
                    doc = replace(victim, stats={Period.ALL_TIME: PeriodStats(downloads=old + 1)})
                    changed.add(victim.model_id)
                else:  # same sort position, other content
                    doc = replace(victim, description=f"edited {counter}")
                doc = replace(doc, model_stream_version=victim.model_stream_version + 1)
            live[doc.model_id] = doc
            writes.append(doc)
        await index.upsert_models(writes)
        await index.delete_models(deletes)
        await index.refresh()

    stayed = {d.model_id for d in initial} - changed
    for model_id in stayed:
        assert seen.count(model_id) == 1, f"{model_id} was returned {seen.count(model_id)} times"
    repeated = {i for i in seen if seen.count(i) > 1}
    assert repeated <= changed


async def test_image_pages(index: SearchIndex) -> None:
    await load(index, images=[image(f"i{n:02}") for n in range(11)])

    cursor = None
    seen: list[str] = []
    while True:
        page = await index.search_images(ImageQuery(browsing_level=PG, limit=4, cursor=cursor))
        seen += image_ids(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert sorted(seen) == [f"i{n:02}" for n in range(11)]
    assert len(seen) == 11
