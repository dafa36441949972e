"""Every sort over every period, the Bayesian rating, Newest's window, and image sorts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from modelhub.search.domain.documents import ImageStats, Period, PeriodStats
from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import ImageQuery, ImageSort, ModelQuery, ModelSort
from modelhub.search.domain.ranking import METRIC_SORTS, bayesian_rating

from .factories import NOW, image, image_ids, load, model, model_ids

PG = 1

# For each metric sort: the counts that make a model rank high, middle and low.
HIGH_MID_LOW: dict[ModelSort, tuple[dict[str, int], dict[str, int], dict[str, int]]] = {
    ModelSort.HIGHEST_RATED: ({"thumbs_up": 200}, {"thumbs_up": 20, "thumbs_down": 5}, {"thumbs_down": 30}),
    ModelSort.MOST_DOWNLOADED: ({"downloads": 900}, {"downloads": 50}, {"downloads": 3}),
    ModelSort.MOST_LIKED: ({"favorites": 90}, {"favorites": 9}, {"favorites": 1}),
    ModelSort.MOST_DISCUSSED: ({"comments": 40}, {"comments": 4}, {"comments": 0}),
    ModelSort.MOST_COLLECTED: ({"collected": 70}, {"collected": 7}, {}),
    ModelSort.MOST_IMAGES: ({"images": 30}, {"images": 3}, {"images": 1}),
}


@pytest.mark.parametrize("period", list(Period))
@pytest.mark.parametrize("sort", METRIC_SORTS)
async def test_metric_sorts_use_the_counts_of_their_period(index: SearchIndex, sort: ModelSort, period: Period) -> None:
    high, mid, low = (PeriodStats(**counts) for counts in HIGH_MID_LOW[sort])

    # In every other period the order is the reverse, so reading the wrong period shows.
    def stats(mine: PeriodStats, others: PeriodStats) -> dict[Period, PeriodStats]:
        return {p: (mine if p is period else others) for p in Period}

    await load(
        index,
        [
            model("low", stats=stats(low, high)),
            model("high", stats=stats(high, low)),
            model("mid", stats=stats(mid, mid)),
        ],
    )

    page = await index.search_models(ModelQuery(browsing_level=PG, sort=sort, period=period))

    assert model_ids(page) == ["high", "mid", "low"]
    if sort is ModelSort.HIGHEST_RATED:
        assert page.hits[0].sort_value == pytest.approx(bayesian_rating(high.thumbs_up, high.thumbs_down))
    else:
        assert page.hits[1].sort_value > page.hits[2].sort_value


async def test_one_perfect_review_does_not_beat_a_thousand_good_ones(index: SearchIndex) -> None:
    def rated(up: int, down: int) -> dict[Period, PeriodStats]:
        return {Period.ALL_TIME: PeriodStats(thumbs_up=up, thumbs_down=down)}

    await load(
        index,
        [
            model("one-perfect", stats=rated(1, 0)),
            model("thousand-at-96", stats=rated(960, 40)),
            model("unreviewed"),
            model("ten-mixed", stats=rated(6, 4)),
        ],
    )

    page = await index.search_models(ModelQuery(browsing_level=PG, sort=ModelSort.HIGHEST_RATED))

    assert model_ids(page) == ["thousand-at-96", "one-perfect", "unreviewed", "ten-mixed"]
    assert [round(h.sort_value, 3) for h in page.hits] == [0.959, 0.909, 0.9, 0.75]


async def test_newest_orders_by_first_publish_time_and_its_period_is_a_window(index: SearchIndex) -> None:
    def published(days: float) -> dict[str, object]:
        return {"published_at": NOW - timedelta(days=days), "created_at": NOW - timedelta(days=days + 1)}

    await load(
        index,
        [
            model("hour", **published(1 / 24)),  # type: ignore[arg-type]
            model("days-3", **published(3)),  # type: ignore[arg-type]
            model("days-20", **published(20)),  # type: ignore[arg-type]
            model("days-200", **published(200)),  # type: ignore[arg-type]
            model("years-3", **published(3 * 365)),  # type: ignore[arg-type]
        ],
    )

    async def newest(period: Period) -> list[str]:
        return model_ids(await index.search_models(ModelQuery(browsing_level=PG, sort=ModelSort.NEWEST, period=period)))

    assert await newest(Period.ALL_TIME) == ["hour", "days-3", "days-20", "days-200", "years-3"]
    assert await newest(Period.YEAR) == ["hour", "days-3", "days-20", "days-200"]
    assert await newest(Period.MONTH) == ["hour", "days-3", "days-20"]
    assert await newest(Period.WEEK) == ["hour", "days-3"]
    assert await newest(Period.DAY) == ["hour"]
    page = await index.search_models(ModelQuery(browsing_level=PG, sort=ModelSort.NEWEST, limit=1))
    assert page.hits[0].sort_value == (NOW - timedelta(hours=1)).timestamp()


async def test_newest_falls_back_to_creation_time_when_never_published(index: SearchIndex) -> None:
    await load(
        index,
        [
            model("old", published_at=NOW - timedelta(days=9)),
            model("no-publish-time", published_at=None, created_at=NOW - timedelta(days=1)),
        ],
    )

    page = await index.search_models(ModelQuery(browsing_level=PG, sort=ModelSort.NEWEST))

    assert model_ids(page) == ["no-publish-time", "old"]


async def test_relevance_breaks_equal_text_scores_by_popularity(index: SearchIndex) -> None:
    def downloads(n: int) -> dict[Period, PeriodStats]:
        return {Period.ALL_TIME: PeriodStats(downloads=n)}

    await load(
        index,
        [
            model("rare", "Anime Lines", stats=downloads(3)),
            model("popular", "Anime Lines", stats=downloads(1_000_000)),
            model("known", "Anime Lines", stats=downloads(5_000)),
        ],
    )

    page = await index.search_models(ModelQuery(browsing_level=PG, text="anime", sort=ModelSort.RELEVANCE))

    assert model_ids(page) == ["popular", "known", "rare"]
    assert page.hits[0].sort_value > page.hits[1].sort_value > page.hits[2].sort_value


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        (ImageSort.MOST_REACTIONS, ["loved", "talked", "fresh"]),
        (ImageSort.MOST_COMMENTS, ["talked", "loved", "fresh"]),
        (ImageSort.NEWEST, ["fresh", "talked", "loved"]),
    ],
)
async def test_image_sorts(index: SearchIndex, sort: ImageSort, expected: list[str]) -> None:
    await load(
        index,
        images=[
            image("loved", stats=ImageStats(reactions=90, comments=2), created_at=NOW - timedelta(days=9)),
            image("talked", stats=ImageStats(reactions=10, comments=30), created_at=NOW - timedelta(days=5)),
            image("fresh", stats=ImageStats(reactions=1, comments=0), created_at=NOW - timedelta(hours=1)),
        ],
    )

    page = await index.search_images(ImageQuery(browsing_level=PG, sort=sort))

    assert image_ids(page) == expected
