"""Sort keys and the Bayesian rating (modelhub.search.domain.ranking)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelhub.search.domain import ranking
from modelhub.search.domain.documents import Period, PeriodStats
from modelhub.search.domain.queries import ModelSort

from .contract.factories import model


def test_one_positive_review_loses_to_a_thousand_mostly_positive_ones() -> None:
    one = ranking.bayesian_rating(1, 0)
    thousand = ranking.bayesian_rating(960, 40)  # 96 % positive: a 4.8 out of 5

    assert thousand > one > ranking.bayesian_rating(0, 0) == ranking.PRIOR_MEAN
    assert ranking.bayesian_rating(0, 1) < ranking.PRIOR_MEAN


def test_the_rating_formula() -> None:
    # (v·R + m·C) / (v + m) with v = 25 votes, R = 0.8, m = 10, C = 0.9
    assert ranking.bayesian_rating(20, 5) == pytest.approx((25 * 0.8 + 10 * 0.9) / 35)
    assert ranking.bayesian_rating(-5, -5) == ranking.PRIOR_MEAN  # nonsense counts count as none


@given(
    a=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    b=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
)
def test_more_votes_at_the_same_share_move_further_from_the_prior(a: tuple[int, int], b: tuple[int, int]) -> None:
    rating = ranking.bayesian_rating(*a)
    assert 0 <= rating <= 1
    doubled = ranking.bayesian_rating(2 * a[0], 2 * a[1])
    assert abs(doubled - ranking.PRIOR_MEAN) >= abs(rating - ranking.PRIOR_MEAN) - 1e-12


@given(v1=st.integers(0, ranking.MAX_VALUE), v2=st.integers(0, ranking.MAX_VALUE), a=st.text(min_size=1), b=st.text())
def test_keys_order_by_value_first(v1: int, v2: int, a: str, b: str) -> None:
    k1, k2 = ranking.compose(v1, a), ranking.compose(v2, b)

    assert 0 <= k1 <= ranking.MAX_KEY < 2**63
    assert ranking.key_value(k1) == v1
    if v1 > v2:
        assert k1 > k2


def test_values_beyond_32_bits_are_clamped() -> None:
    assert ranking.key_value(ranking.compose(2**40, "m")) == ranking.MAX_VALUE
    assert ranking.key_value(ranking.compose(-3, "m")) == 0


def test_every_sort_and_period_has_a_key() -> None:
    doc = model(
        "m1",
        stats={
            Period.DAY: PeriodStats(downloads=1, favorites=2, comments=3, collected=4, images=5, thumbs_up=6),
            Period.ALL_TIME: PeriodStats(downloads=100),
        },
    )

    keys = ranking.model_sort_keys(doc)

    assert set(keys) == set(ranking.all_sort_fields())
    assert len(keys) == 6 * 5 + 1
    day = {s: ranking.key_value(keys[ranking.sort_field(s, Period.DAY)]) for s in ranking.METRIC_SORTS}
    assert day == {
        ModelSort.HIGHEST_RATED: round(ranking.bayesian_rating(6, 0) * ranking.RATING_SCALE),
        ModelSort.MOST_DOWNLOADED: 1,
        ModelSort.MOST_LIKED: 2,
        ModelSort.MOST_DISCUSSED: 3,
        ModelSort.MOST_COLLECTED: 4,
        ModelSort.MOST_IMAGES: 5,
    }
    assert ranking.key_value(keys["key_downloads_week"]) == 0  # a period without counts counts zero
    assert ranking.key_value(keys["key_newest"]) == int(doc.published_at.timestamp())  # type: ignore[union-attr]


def test_relevance_has_no_key() -> None:
    with pytest.raises(ValueError, match="Relevance"):
        ranking.sort_field(ModelSort.RELEVANCE, Period.ALL_TIME)


@pytest.mark.parametrize(
    ("downloads", "factor"), [(0, 1.0), (9, pytest.approx(1.2, abs=0.05)), (10**7, 2.0), (10**9, 2.0)]
)
def test_popularity_at_most_doubles_a_text_score(downloads: int, factor: object) -> None:
    weight = ranking.popularity_weight(model("m", stats={Period.ALL_TIME: PeriodStats(downloads=downloads)}))

    assert math.log2(2 + weight) == factor


def test_an_exact_name_match_beats_any_popular_fuzzy_one() -> None:
    assert ranking.TEXT_BOOSTS["name_exact"] > 2 * ranking.TEXT_BOOSTS["name_fuzzy"]
    assert ranking.TEXT_BOOSTS["name_exact"] > ranking.TEXT_BOOSTS["name_prefix"] > ranking.TEXT_BOOSTS["name_fuzzy"]
